"""scripts/style_suite.py: run workflows headless, stylize images, run batches, manage model files."""

import argparse
import contextlib
import os
import shlex
import sys
from pathlib import Path

from . import batch, needed_files, workflow
from .client import Comfy, ComfyError, ServerUnreachable
from .local import LocalComfyUI
from .progress import ProgressLine

DEFAULT_SERVER = "http://127.0.0.1:8188"
STYLE, CONTENT, PROMPT, SAMPLER = "Style image", "Content image", "Prompt", "Sampler"
STRENGTHS = {"style_strength": "StyleShot Apply Style", "content_strength": "StyleShot Apply Content"}


def _server_options(parser, several=False):
    group = parser.add_argument_group("server")
    group.add_argument(
        "--server",
        action="append" if several else "store",
        metavar="URL",
        help="ComfyUI's address"
        + (" (repeat it to spread the batch over servers)" if several else "")
        + "; default: start the ComfyUI at COMFYUI_PATH, else "
        + DEFAULT_SERVER,
    )
    group.add_argument(
        "--comfyui-python",
        metavar="PYTHON",
        help="the Python with ComfyUI's requirements, to start COMFYUI_PATH (default: this one)",
    )
    group.add_argument(
        "--comfyui-args",
        default="",
        metavar="ARGS",
        help='arguments for the ComfyUI this command starts, e.g. --comfyui-args "--cpu"',
    )
    group.add_argument(
        "--download",
        action="store_true",
        help="first fetch the model files the workflow names that the ComfyUI at COMFYUI_PATH lacks "
        "(with the models command, in --comfyui-python)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up on a prompt after this long (default: wait)",
    )


def _input_options(parser, images=True):
    group = parser.add_argument_group("inputs (set on the nodes with these titles)")
    if images:
        group.add_argument("--style", metavar="IMAGE", help=f"image for the node titled '{STYLE}'")
        group.add_argument("--content", metavar="IMAGE", help=f"image for the node titled '{CONTENT}'")
    group.add_argument("--prompt", help=f"text of the node titled '{PROMPT}'")
    group.add_argument("--seed", type=int, help=f"seed of the node titled '{SAMPLER}'")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="'TITLE.INPUT=VALUE'",
        help="any input of a titled node, e.g. 'Sampler.steps=20' or "
        "'StyleShot Apply Style.strength=0.8'; a Load Image set to a local file uploads it",
    )


def parser():
    main = argparse.ArgumentParser(prog="style_suite.py", description=__doc__.split(":", 1)[1].strip())
    commands = main.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run an API-format workflow and download its images")
    run.add_argument("workflow", help=f"a shipped workflow name ({', '.join(workflow.shipped())}) or a file")
    run.add_argument("-o", "--output", default="output", type=Path, help="folder for the images (default: output)")
    _input_options(run)
    _server_options(run)

    stylize = commands.add_parser("stylize", help="style image (+ content image) -> stylized image (StyleShot)")
    stylize.add_argument("--style", required=True, metavar="IMAGE", help="the style reference")
    stylize.add_argument("--content", metavar="IMAGE", help="the content image (leave it out for text-driven)")
    _stylize_options(stylize)
    stylize.add_argument(
        "-o", "--output", type=Path, help="the image to write (default: <content>__<style>.png, or <style>.png)"
    )
    _input_options(stylize, images=False)
    _server_options(stylize)

    many = commands.add_parser("batch", help="every content image with every style image, over one or more servers")
    many.add_argument("--styles", nargs="+", required=True, metavar="PATH", help="style images or folders of them")
    many.add_argument(
        "--contents",
        nargs="+",
        default=[],
        metavar="PATH",
        help="content images or folders (leave out for text-driven)",
    )
    _stylize_options(many)
    many.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        help="folder for <content>__<style>.png; images already there are skipped",
    )
    many.add_argument(
        "--per-server",
        type=int,
        default=2,
        metavar="N",
        help="prompts each server holds at once (default 2: one runs while the next waits)",
    )
    _input_options(many, images=False)
    _server_options(many, several=True)

    commands.add_parser("models", help="list, check and download the model files", add_help=False)
    return main


def _stylize_options(parser):
    parser.add_argument(
        "--content-map",
        choices=("contour", "lineart"),
        default="contour",
        help="how the content image is de-stylized (StyleShot's two releases; default contour)",
    )
    parser.add_argument(
        "--workflow",
        help="another API workflow with the same titles (default: the shipped "
        "styleshot_image_driven_<map>, or styleshot_text_driven)",
    )
    for option, title in STRENGTHS.items():
        parser.add_argument("--" + option.replace("_", "-"), type=float, help=f"strength of '{title}'")


def settings(args, prompt, style=None, content=None) -> list:
    """(title, input, value) for the named options, then every --set."""
    chosen = [
        (STYLE, "image", style and str(style)),
        (CONTENT, "image", content and str(content)),
        (PROMPT, "text", args.prompt),
    ]
    chosen += [(title, "strength", getattr(args, option, None)) for option, title in STRENGTHS.items()]
    if args.seed is not None:
        _, sampler = workflow.titled(prompt, SAMPLER)
        chosen.append((SAMPLER, "noise_seed" if "noise_seed" in sampler["inputs"] else "seed", args.seed))
    return [s for s in chosen if s[2] is not None] + [workflow.parse_setting(text) for text in args.set]


@contextlib.contextmanager
def servers(args):
    """The servers to use: those given, a ComfyUI started from COMFYUI_PATH, or the default address."""
    given = args.server if isinstance(args.server, list) else [args.server] if args.server else []
    if given or not os.environ.get("COMFYUI_PATH"):
        yield [url if "://" in url else "http://" + url for url in given] or [DEFAULT_SERVER]
        return
    print(f"starting ComfyUI from {os.environ['COMFYUI_PATH']} ...", file=sys.stderr)
    with LocalComfyUI(os.environ["COMFYUI_PATH"], args.comfyui_python, shlex.split(args.comfyui_args)) as local:
        try:
            yield [local.url]
        except ServerUnreachable as error:
            raise ComfyError(f"{error}\nThe end of its log:\n{local.log()[-3000:]}") from None


def preview(args, prompt, chosen) -> dict:
    """The settings applied to a copy, uploading nothing, so a wrong title or value is reported
    before any server starts; with --download, the model files it names are fetched first."""
    configured = workflow.configure(prompt, chosen, upload=lambda path: path.name)
    if args.download:
        needed_files.fetch(configured, os.environ.get("COMFYUI_PATH"), args.comfyui_python)
    return configured


def run_one(url, prompt, chosen, previewed, timeout):
    """Run one prompt with a progress line, once the server has the model files `previewed` (the
    prompt as preview() configured it) names; returns (client, its saved images)."""
    client = Comfy(url)
    client.check()
    needed_files.require_on_server(client, previewed)
    ready = workflow.configure(prompt, chosen, client.upload_image)
    progress = ProgressLine(ready)
    try:
        return client, client.run(ready, progress, timeout)
    finally:
        progress.finish()


def command_run(args):
    prompt = workflow.load(args.workflow)
    chosen = settings(args, prompt, args.style, args.content)
    previewed = preview(args, prompt, chosen)
    with servers(args) as (url, *_):
        client, images = run_one(url, prompt, chosen, previewed, args.timeout)
        args.output.mkdir(parents=True, exist_ok=True)
        for image in images:
            path = args.output / image["filename"]
            path.write_bytes(client.view(image))
            print(path)
    if not images:
        print("the workflow saved no image", file=sys.stderr)


def stylize_workflow(args, with_content: bool) -> dict:
    if args.workflow:
        return workflow.load(args.workflow)
    return workflow.load(f"styleshot_image_driven_{args.content_map}" if with_content else "styleshot_text_driven")


def command_stylize(args):
    (style,) = batch.image_files([args.style], "style")
    content = batch.image_files([args.content], "content")[0] if args.content else None
    prompt = stylize_workflow(args, content is not None)
    chosen = settings(args, prompt, style, content)
    previewed = preview(args, prompt, chosen)
    with servers(args) as (url, *_):
        client, images = run_one(url, prompt, chosen, previewed, args.timeout)
        for path in batch.save_images(client, images, args.output or Path(batch.output_name(style, content))):
            print(path)


def command_batch(args):
    styles = batch.image_files(args.styles, "style")
    contents = batch.image_files(args.contents, "content") if args.contents else []
    prompt = stylize_workflow(args, bool(contents))
    jobs = batch.plan(styles, contents, args.output)
    todo = [job for job in jobs if not job.output.exists()]
    print(f"{len(jobs)} jobs: {len(jobs) - len(todo)} already in {args.output}, {len(todo)} to run", file=sys.stderr)
    if not todo:
        return
    previewed = preview(args, prompt, settings(args, prompt, todo[0].style, todo[0].content))

    def build(job, client):
        return workflow.configure(prompt, settings(args, prompt, job.style, job.content), client.upload_image)

    with servers(args) as urls:
        for url in urls:  # every job names the same model files
            try:
                needed_files.require_on_server(Comfy(url), previewed)
            except ServerUnreachable:
                pass  # batch.run hands its jobs to the other servers
        outcome = batch.run(todo, urls, build, args.per_server, say=lambda text: print(text, file=sys.stderr))
    print(f"{len(outcome.done)} done, {len(jobs) - len(todo)} skipped, {len(outcome.failed)} failed", file=sys.stderr)
    for job, url, message in outcome.failed:
        print(
            f"\nFAILED {job.output.name} (style {job.style}, content {job.content or '-'}, server {url or '-'}):\n"
            f"{message}",
            file=sys.stderr,
        )
    if outcome.failed:
        raise SystemExit(1)


def _with_dashed_values(argv) -> list:
    """argparse reads the '--cpu' of `--comfyui-args "--cpu"` as an option of its own and refuses the
    line ("expected one argument"): join the value to its option (--comfyui-args=--cpu)."""
    joined, rest = [], iter(argv)
    for item in rest:
        value = next(rest, None) if item == "--comfyui-args" else None
        joined.append(item if value is None else f"{item}={value}")
    return joined


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["models"]:  # the model-file command owns its options
        from ..loaders.models_command import main as models

        return models(argv[1:])
    args = parser().parse_args(_with_dashed_values(argv))
    try:
        {"run": command_run, "stylize": command_stylize, "batch": command_batch}[args.command](args)
    except ComfyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to go on (finished images are kept)", file=sys.stderr)
        return 130
    return 0
