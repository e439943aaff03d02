"""The `models` command: lists each model file the pack reads with its status and what to do about
the others; `--download` fetches missing or unusable ones (download.py). Each file is checked as
model_status.py says."""

import argparse
import os
import sys

from .download import DownloadError, download
from .model_files import ALL
from .model_folders import ConfigError, model_folders
from .model_status import check_all
from .weights import ModelFileError

# ---------------------------------------------------------------- the report


def _how_to_get(model_file, folder):
    if not model_file.direct_download:
        return f"get one from {model_file.url} (or your own training) and put it in {folder}"
    renamed = "" if model_file.download_name == model_file.name else f", renamed {model_file.name}"
    instead = "; or choose another model of its kind in the workflow instead" if model_file.substitutable else ""
    return (
        f"download {model_file.download_name} ({model_file.size_mb} MB) from {model_file.url} into {folder}"
        f"{renamed}; or run this command again with --download {model_file.name}{instead}"
    )


def _to_do(status):
    model_file = status.model_file
    for found in status.present:
        if found.problem:
            yield f"replace {found.path}: {_how_to_get(model_file, status.folder)}"
    if status.present:
        return
    for found in status.strays:
        yield f"rename {found.path} to {os.path.join(os.path.dirname(found.path), model_file.name)}"
    if not status.strays:
        yield ("" if model_file.required else "(optional) ") + _how_to_get(model_file, status.folder)


def format_report(statuses, folders) -> str:
    lines = ["Model folders, in search order:"]
    lines += [f"  {key}: {', '.join(paths)}" for key, paths in folders.items()]
    for status in statuses:
        model_file = status.model_file
        need = ("any name, " if model_file.any_name else "") + ("required" if model_file.required else "optional")
        lines += ["", f"{model_file.name} ({need})", f"  purpose: {model_file.purpose}", f"  folder:  {status.folder}"]
        for found in status.present:
            lines.append(f"  file:    {found.path}")
            lines.append(f"  status:  {'invalid: ' + found.problem if found.problem else 'ok: ' + found.description}")
        if not status.present:
            lines.append("  status:  " + ("none" if model_file.any_name else "missing"))
        lines += [
            f"  found as {os.path.basename(found.path)} in {os.path.dirname(found.path)}: {found.description}"
            for found in status.strays
        ]
    to_do = [f"- {status.model_file.name}: {item}" for status in statuses for item in _to_do(status)]
    if to_do:
        lines += ["", "What to do:", *to_do]
    failing = [status.model_file.name for status in statuses if not status.ok]
    lines += ["", f"Not ready: {', '.join(failing)}." if failing else "All required model files are in place."]
    return "\n".join(lines)


# ---------------------------------------------------------------- the command


def _parser():
    parser = argparse.ArgumentParser(
        prog="style_suite.py models",
        description="Check the model files the pack reads: present, in the right folder, under the right name, "
        "and the file they should be. Exit status 0 when every required file is in place and no file is "
        "unusable (with --download NAME...: when the files named are in place), 1 otherwise, 2 when the folders "
        "cannot be found.",
    )
    parser.add_argument(
        "--comfyui",
        metavar="PATH",
        help="the ComfyUI folder (default: $COMFYUI_PATH); its models/ and extra_model_paths.yaml are read",
    )
    parser.add_argument(
        "--models-dir",
        metavar="DIR",
        action="append",
        default=[],
        help="a folder laid out like ComfyUI/models, searched first (repeatable)",
    )
    parser.add_argument(
        "--extra-model-paths-config",
        metavar="YAML",
        nargs="+",
        action="extend",
        default=[],
        help="more extra_model_paths.yaml files, as ComfyUI's option of that name",
    )
    parser.add_argument(
        "--hash",
        action="store_true",
        help="also compare sha256 with the published files (reads every file: slow for GB files)",
    )
    parser.add_argument(
        "--download",
        metavar="NAME",
        nargs="*",
        choices=[model_file.name for model_file in ALL],
        help="download the named files, or with no NAME every required one, where missing or unusable, "
        "into the first folder of their key, then check again (HF_ENDPOINT replaces "
        "https://huggingface.co)",
    )
    return parser


def _download(statuses, names):
    """Download what was asked for; True when every download succeeded."""
    succeeded = True
    for status in statuses:
        model_file = status.model_file
        if (model_file.name not in names) if names else not model_file.required:
            continue
        usable = [found for found in status.present if not found.problem]
        if usable or status.strays:  # a stray only needs renaming
            if names:
                print(
                    f"{model_file.name}: {'already there' if usable else 'there under another name'}, not downloaded",
                    file=sys.stderr,
                )
            continue
        replacing = " (replacing the unusable file once the download is checked)" if status.present else ""
        print(f"{model_file.name}: downloading {model_file.url} into {status.folder}{replacing}", file=sys.stderr)
        try:
            download(model_file, status.folder, progress=_progress)
        except (ModelFileError, DownloadError) as error:
            print(f"\nerror: {error}", file=sys.stderr)
            succeeded = False
        else:
            print(file=sys.stderr)
    return succeeded


def _progress(done, total):
    of = f" of {total / 1e6:,.1f} MB ({100 * done // total}%)" if total else " MB"
    print(f"\r  {done / 1e6:,.1f}{of}", end="", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    comfyui = args.comfyui or os.environ.get("COMFYUI_PATH")
    if not comfyui and not args.models_dir:
        print(
            "error: say where the model folders are: --comfyui PATH or the COMFYUI_PATH environment variable "
            "(the ComfyUI folder), or --models-dir DIR (a folder laid out like ComfyUI/models)",
            file=sys.stderr,
        )
        return 2
    try:
        folders = model_folders(comfyui, args.extra_model_paths_config, args.models_dir)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    statuses = check_all(folders, args.hash)
    downloaded = True
    if args.download is not None:
        downloaded = _download(statuses, args.download)
        statuses = check_all(folders, args.hash)
    print(format_report(statuses, folders))
    if args.download:  # the files asked for, e.g. those one workflow needs
        ready = all(status.in_place for status in statuses if status.model_file.name in args.download)
    else:
        ready = all(status.ok for status in statuses)
    return 0 if downloaded and ready else 1
