"""The model files a workflow names: checked on the server before the workflow is posted, so a missing
one is named with what it is for and the one command that fetches it (ComfyUI itself would only say
"Value not in list"), and fetched on request with the `models` command."""

import subprocess
import sys
import urllib.parse
from pathlib import Path

from ..loaders.model_files import BY_NAME, MODEL_SUFFIXES
from .client import ComfyError, node_name

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "style_suite.py"
PACK_NODE_PREFIX = "StyleSuite"  # the pack's node ids (frozen)


def model_inputs(prompt: dict) -> list:
    """(node id, input name, file name) of every input of `prompt` set to a model file's name."""
    return [
        (node_id, name, value)
        for node_id, node in prompt.items()
        for name, value in node["inputs"].items()
        if isinstance(value, str) and value.lower().endswith(MODEL_SUFFIXES)
    ]


def known_files(prompt: dict) -> list:
    """The names of the pack's listed model files (model_files.ALL) that `prompt` uses, in order."""
    return list(dict.fromkeys(value for _, _, value in model_inputs(prompt) if value in BY_NAME))


def fetch_command(names) -> str:
    return f"python scripts/style_suite.py models --download {' '.join(names)}"


def _choices(spec):
    """The options of a combo input as /object_info gives it ([[...], {...}], or ["COMBO", {"options": [...]}])."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1].get("options")
    return None


def _relay(command) -> int:
    """Run `command`, passing everything it prints (download progress included) on to stderr as it
    comes; returns its exit status."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        while chunk := process.stdout.read1(4096):
            sys.stderr.write(chunk.decode(errors="replace"))
            sys.stderr.flush()
    return process.returncode


def missing_on_server(client, prompt: dict) -> list:
    """The model inputs whose file the server does not list, as (node id, input name, file name).
    Left to ComfyUI's own validation: a node type the server lacks (it names it), and a file the pack
    does not list on one of the pack's nodes (their own check says what the file should be)."""
    infos, missing = {}, []
    for node_id, name, value in model_inputs(prompt):
        class_type = prompt[node_id]["class_type"]
        if value not in BY_NAME and class_type.startswith(PACK_NODE_PREFIX):
            continue
        if class_type not in infos:
            infos[class_type] = client.get(f"/object_info/{urllib.parse.quote(class_type)}").get(class_type, {})
        inputs = infos[class_type].get("input", {})
        choices = _choices({**inputs.get("required", {}), **inputs.get("optional", {})}.get(name))
        if choices is not None and value not in choices:
            missing.append((node_id, name, value))
    return missing


def require_on_server(client, prompt: dict) -> None:
    """Raise ComfyError naming every model file the workflow needs and the server lacks."""
    missing = missing_on_server(client, prompt)
    if not missing:
        return
    lines = [f"the ComfyUI at {client.url} lacks model files this workflow needs:"]
    for node_id, name, value in missing:
        model_file = BY_NAME.get(value)
        if model_file:
            lines.append(
                f"  - {value} ({node_name(prompt, node_id)}): {model_file.purpose}; "
                f"it goes in models/{model_file.folder}"
            )
        else:
            title = prompt[node_id].get("_meta", {}).get("title", "Title")
            lines.append(
                f"  - {value} ({node_name(prompt, node_id)}, input '{name}'): put it in the model folder that "
                f"input lists, or choose a file it has with --set '{title}.{name}=FILE'"
            )
    known = list(dict.fromkeys(value for _, _, value in missing if value in BY_NAME))
    if known:
        lines.append(
            f"Run this command again with --download to fetch them into the model folders of the ComfyUI at "
            f"COMFYUI_PATH, or fetch them yourself (with ComfyUI's Python, COMFYUI_PATH set):\n"
            f"  {fetch_command(known)}\nthen run this command again."
        )
    raise ComfyError("\n".join(lines))


def fetch(prompt: dict, comfyui, python=None) -> None:
    """Download the pack's listed files that `prompt` names and the ComfyUI at `comfyui` lacks, with
    the `models` command run by `python` (ComfyUI's; it checks each file as the pack's loaders read
    it). Its report goes to stderr, which is where this command's messages go."""
    names = known_files(prompt)
    if not names:
        return
    if not comfyui:
        raise ComfyError(
            "--download fetches model files into the model folders of a ComfyUI folder: set "
            f"COMFYUI_PATH to it (for a server on another machine, run there: {fetch_command(names)})"
        )
    command = [python or sys.executable, str(SCRIPT), "models", "--comfyui", str(comfyui), "--download", *names]
    if _relay(command) != 0:
        raise ComfyError(
            f"not every model file this workflow needs could be fetched (the report above says why). "
            f"The command was: {' '.join(command)}. Downloads resume where they stopped: run it again. "
            "It needs the Python that has ComfyUI's requirements (--comfyui-python)."
        )
