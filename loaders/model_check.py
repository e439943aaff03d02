"""The `models` command: is each model file the pack reads in place, is it the file it should be,
and what to do about the others (`--download` fetches missing or unusable ones, see download.py).

A file is checked as its loader reads it (key layout and shapes, memory-mapped; no network is
built, nothing in it runs), against the published size where that is known, and with --hash
against the published sha256. Required files: those marked `required` in model_files.py; an
optional one (coarse lineart, the lineart release, InST styles and the CLIP model InST needs)
fails the command only when it is there but unusable.
"""

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass

from . import annotators, clip_vision
from .checkpoints import check_checkpoint
from .inst import load_style_file
from .model_files import (
    ALL,
    CLIP_VISION_L,
    HED,
    INST_STYLE,
    LINEART_COARSE,
    LINEART_FINE,
    SD15_CHECKPOINT,
    SDXL_CHECKPOINT,
    STYLE_ENCODER,
    STYLESHOT_CONTOUR,
    STYLESHOT_LINEART,
    ModelFile,
)
from .model_folders import ConfigError, model_folders
from .styleshot import read_adapter_weights, read_encoder_weights
from .weights import ModelFileError, dtype_names

MODEL_SUFFIXES = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")  # ComfyUI's list
SIZE_TOLERANCE = 0.01  # for files known only by size_mb (rounded to 0.1 MB): an error page is far off
CHUNK = 1 << 20
SAME_LAYOUT = "{} share this layout: the file cannot say which one it is"


# ---------------------------------------------------------------- what a file is


def _hed(model_file, path):
    return f"HED network, {dtype_names(annotators.read_annotator_weights(path, annotators.HED_KIND).values())}"


def _lineart(model_file, path):
    weights = annotators.read_annotator_weights(path, annotators.LINEART_KIND)
    shared = SAME_LAYOUT.format(f"{LINEART_FINE.name} and {LINEART_COARSE.name}")
    return f"lineart generator, {dtype_names(weights.values())} ({shared})"


def _encoder(model_file, path):
    return f"StyleShot style-aware encoder, {dtype_names(read_encoder_weights(path).values())}"


def _adapter(model_file, path):
    style, content = read_adapter_weights(path)
    if not content:
        raise ModelFileError(
            f"{os.path.basename(path)} is the stage-1 release without the content-fusion encoder; {model_file.name} "
            f"is the release that has it: download {model_file.download_name} from {model_file.url}"
        )
    shared = SAME_LAYOUT.format("the contour and lineart releases")
    return (
        f"StyleShot adapter with content-fusion encoder, {dtype_names([*style.values(), *content.values()])} ({shared})"
    )


def _style(model_file, path):
    return f"style file: {load_style_file(path).kind}"


def _clip(model_file, path):
    return clip_vision.check_vit_l(path)


_CHECKS = {
    HED.name: _hed,
    LINEART_FINE.name: _lineart,
    LINEART_COARSE.name: _lineart,
    STYLE_ENCODER.name: _encoder,
    STYLESHOT_CONTOUR.name: _adapter,
    STYLESHOT_LINEART.name: _adapter,
    INST_STYLE.name: _style,
    CLIP_VISION_L.name: _clip,
    SD15_CHECKPOINT.name: lambda model_file, path: check_checkpoint(path, "SD1.x"),
    SDXL_CHECKPOINT.name: lambda model_file, path: check_checkpoint(path, "SDXL"),
}


def check_file(model_file, path) -> str:
    """A short description of what `path` holds when it can fill `model_file`'s slot ("HED network,
    fp16"); else ModelFileError naming the file and what is wrong."""
    return _CHECKS[model_file.name](model_file, str(path))


# ---------------------------------------------------------------- the published file


def size_problem(model_file, size) -> str:
    """'' when `size` bytes can be the published file; else the published size, for a message."""
    if model_file.size_bytes:
        return "" if size == model_file.size_bytes else f"{model_file.size_bytes:,} bytes"
    if abs(size / 1e6 - model_file.size_mb) <= SIZE_TOLERANCE * model_file.size_mb:
        return ""
    return f"about {model_file.size_mb} MB"


def hash_file(path, hasher=None):
    """`hasher` (a new sha256 by default) fed with the bytes of the file."""
    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            hasher.update(chunk)
    return hasher


def check_published(model_file, path, with_hash=False) -> None:
    """Refuse a file in the published format whose size (and with `with_hash`, sha256) is not the
    published file's. A converted copy (another format) has its own size and hash: not compared."""
    published_format = os.path.splitext(model_file.download_name)[1].lower()
    if not model_file.direct_download or os.path.splitext(path)[1].lower() != published_format:
        return
    name, size = os.path.basename(path), os.path.getsize(path)
    expected = size_problem(model_file, size)
    if expected:
        raise ModelFileError(
            f"{name} is {size:,} bytes; the published {model_file.download_name} is {expected}: "
            "an incomplete download or another file. Download it again."
        )
    if with_hash and model_file.sha256:
        digest = hash_file(path).hexdigest()
        if digest != model_file.sha256:
            raise ModelFileError(
                f"{name} has sha256 {digest}; the published {model_file.download_name} has "
                f"{model_file.sha256}: the file is damaged or another version. Download it again."
            )


# ---------------------------------------------------------------- each slot in the folders


@dataclass
class Found:
    path: str
    description: str = ""  # what it is, when it can be used
    problem: str = ""  # why it cannot


@dataclass
class Status:
    model_file: ModelFile
    folder: str  # where it goes: the first folder of its key
    present: list  # Found for each file under a name the nodes look for (any model file, for any_name slots)
    strays: list  # when none is: usable files under other names (workflows refer to files by name)

    @property
    def ok(self) -> bool:
        if any(found.problem for found in self.present):
            return False
        return bool(self.present) or not self.model_file.required

    @property
    def in_place(self) -> bool:
        """A usable file is there (whether or not the file is required)."""
        return bool(self.present) and self.ok


def examine(model_file, path, with_hash=False) -> Found:
    try:
        description = check_file(model_file, path)
        check_published(model_file, path, with_hash)
        return Found(path, description)
    except ModelFileError as error:
        return Found(path, problem=str(error))
    except OSError as error:
        return Found(path, problem=f"{path} cannot be read ({error})")


def _model_files(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(
        name
        for name in os.listdir(folder)
        if name.lower().endswith(MODEL_SUFFIXES) and os.path.isfile(os.path.join(folder, name))
    )


def _first_of_each(names, folders):
    """The path of each name in the first folder that has it (as ComfyUI resolves a file name)."""
    paths = {}
    for folder in folders:
        for name in _model_files(folder):
            if names is None or name in names:
                paths.setdefault(name, os.path.join(folder, name))
    return [paths[name] for name in sorted(paths)]


def slot_status(model_file, folders, with_hash=False) -> Status:
    """`model_file`'s files in `folders` (its key's folders, in search order), each checked."""
    names = None if model_file.any_name else model_file.accepted_names
    present = [examine(model_file, path, with_hash) for path in _first_of_each(names, folders)]
    strays = []  # a checkpoint of another name is the user's own model, chosen in the workflow, not renamed
    if not present and not model_file.any_name and not model_file.substitutable:
        claimed = {name for other in ALL if other.folder == model_file.folder for name in other.accepted_names}
        others = [os.path.join(f, name) for f in folders for name in _model_files(f) if name not in claimed]
        strays = [found for found in (examine(model_file, path, with_hash) for path in others) if not found.problem]
    return Status(model_file, folders[0], present, strays)


def check_all(folders, with_hash=False) -> list:
    """A Status for each model file, `folders` as model_folders returns them."""
    return [slot_status(model_file, folders[model_file.folder], with_hash) for model_file in ALL]


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
    from .download import DownloadError, download  # download.py checks its result with this module

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
