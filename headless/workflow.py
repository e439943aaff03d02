"""API-format workflows: find the shipped ones, and set their inputs by node title.

A node's title (`_meta.title`) is what users see in the page, so it names what a command line sets:
`--set "Sampler.steps=20"` sets the input `steps` of the node titled "Sampler".
"""

import copy
import json
from pathlib import Path

from .client import ComfyError

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows" / "api"
IMAGE_LOADERS = {"LoadImage"}


def shipped() -> list:
    return sorted(path.stem for path in WORKFLOWS.glob("*.json"))


def load(name_or_path: str) -> dict:
    """A workflow file, or the name of a shipped one (`styleshot_text_driven`)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = WORKFLOWS / f"{name_or_path}.json"
    if not path.is_file():
        raise ComfyError(
            f"no workflow file '{name_or_path}', and no shipped workflow of that name (shipped: {', '.join(shipped())})"
        )
    try:
        prompt = json.loads(path.read_text())
    except ValueError as error:
        raise ComfyError(f"{path} is not valid JSON ({error})") from None
    if isinstance(prompt, dict) and "nodes" in prompt and "links" in prompt:
        raise ComfyError(
            f"{path} is a UI-format workflow (what the ComfyUI page saves). Post the API format: "
            "in the page, Workflow > Export (API); the shipped ones are in workflows/api/."
        )
    if (
        not isinstance(prompt, dict)
        or not prompt
        or not all(isinstance(node, dict) and "class_type" in node and "inputs" in node for node in prompt.values())
    ):
        raise ComfyError(f"{path} is not an API-format workflow ({{node id: {{class_type, inputs}}}})")
    return prompt


def titled(prompt: dict, title: str):
    """(node id, node) of the one node with this title (case does not matter)."""
    found = [(i, node) for i, node in prompt.items() if node.get("_meta", {}).get("title", "").lower() == title.lower()]
    if len(found) == 1:
        return found[0]
    titles = sorted({node.get("_meta", {}).get("title", "") for node in prompt.values()} - {""})
    if not found:
        raise ComfyError(f"the workflow has no node titled '{title}'; its titles are: {', '.join(titles)}")
    raise ComfyError(f"the workflow has {len(found)} nodes titled '{title}': give them different titles")


def parse_setting(text: str):
    """'Title.input=value' -> (title, input, value text)."""
    target, sep, value = text.partition("=")
    title, dot, name = target.rpartition(".")
    if not (sep and dot and title and name):
        raise ComfyError(f"--set '{text}': write it as 'Node title.input=value', e.g. 'Sampler.steps=20'")
    return title.strip(), name.strip(), value


def set_input(prompt: dict, title: str, name: str, value):
    """Set a widget input of the node titled `title`. A string value takes the type the input has
    in the workflow (so "20" sets steps to 20); links cannot be replaced this way."""
    node_id, node = titled(prompt, title)
    inputs = node["inputs"]
    widgets = [k for k, v in inputs.items() if not isinstance(v, list)]
    if name not in inputs:
        raise ComfyError(
            f"node '{title}' ({node['class_type']}) has no input '{name}' in this workflow; "
            f"it has: {', '.join(widgets) or 'no settable inputs'}"
        )
    if isinstance(inputs[name], list):
        raise ComfyError(f"input '{name}' of node '{title}' comes from another node; set that node instead")
    inputs[name] = _as_type_of(inputs[name], value, f"{title}.{name}")


def _as_type_of(current, value, where):
    if not isinstance(value, str) or isinstance(current, str):
        return value
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false"):
                raise ValueError
            return value.lower() == "true"
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError:
        expected = {bool: "true or false", int: "a whole number", float: "a number"}[type(current)]
        raise ComfyError(f"{where} takes {expected}, not '{value}'") from None
    return value


def configure(prompt: dict, settings, upload) -> dict:
    """A copy of `prompt` with `settings` [(title, input, value)] applied. A LoadImage `image` set to
    a local file is uploaded with `upload(path) -> name` first (other names are files already in the
    server's input folder)."""
    prompt = copy.deepcopy(prompt)
    for title, name, value in settings:
        _, node = titled(prompt, title)
        if node["class_type"] in IMAGE_LOADERS and name == "image" and Path(value).is_file():
            value = upload(Path(value))
        set_input(prompt, title, name, value)
    return prompt
