"""Each UI workflow in workflows/ and its API twin in workflows/api/ are the same graph: same node
classes, links and input values (widget values mapped to input names with the real INPUT_TYPES)."""

import json
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
UI_WORKFLOWS = sorted(WORKFLOWS.glob("*.json"))
FRONTEND_ONLY = {"Note", "MarkdownNote"}


def widget_names(cls):
    """Input names that are widgets, in order, with the extra values the frontend stores after some."""
    names = []
    for group in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(group, {}).items():
            kind = spec[0]
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                names.append(name)
                options = spec[1] if len(spec) > 1 else {}
                if options.get("control_after_generate") or (name in ("seed", "noise_seed") and kind == "INT"):
                    names.append(None)  # the frontend's "randomize/fixed" value
                if options.get("image_upload"):
                    names.append(None)  # LoadImage's upload button value
    return names


def ui_to_api(ui, mappings):
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", 0) != 0:
            continue
        cls = mappings[node["type"]]
        names, values = widget_names(cls), node.get("widgets_values", [])
        assert len(values) == len(names), f"node {node['id']} ({node['type']}) has {len(values)} widget values for {names}"
        inputs = {}
        for name, value in zip(names, values):
            if name is not None:
                inputs[name] = value
        for socket in node["inputs"]:
            if socket.get("link") is not None:
                _, src, src_slot, *_ = links[socket["link"]]
                inputs[socket["name"]] = [str(src), src_slot]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def test_every_ui_workflow_has_an_api_twin():
    assert UI_WORKFLOWS, "no workflow is shipped"
    assert "styleshot_text_driven.json" in {p.name for p in UI_WORKFLOWS}
    assert {p.name for p in UI_WORKFLOWS} == {p.name for p in (WORKFLOWS / "api").glob("*.json")}


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_ui_and_api_workflows_are_the_same_graph(comfy, path):
    ui = json.loads(path.read_text())
    api = json.loads((WORKFLOWS / "api" / path.name).read_text())
    assert ui_to_api(ui, comfy[0].NODE_CLASS_MAPPINGS) == {
        node_id: {"class_type": node["class_type"], "inputs": node["inputs"]} for node_id, node in api.items()
    }
    titles = {str(n["id"]): n.get("title") for n in ui["nodes"] if n["type"] not in FRONTEND_ONLY}
    assert titles == {node_id: node["_meta"]["title"] for node_id, node in api.items()}  # tests set inputs by title
    notes = [n for n in ui["nodes"] if n["type"] in FRONTEND_ONLY]
    assert notes and "models/" in notes[0]["widgets_values"][0], "a Note must say which model files go where"
