"""The shipped workflow files, as files: each UI workflow has its API twin, a note naming every model
file it loads and the folder it goes in, and a screenshot in the README. (That the twins are the same
graph, and that the frontend loads and runs them, is proven in a real ComfyUI: tests/host/test_frontend.py.)"""

import re
from pathlib import Path

import pytest

from fixtures.shipped_workflows import API_DIR, UI_WORKFLOWS, load
from style_suite.loaders.model_files import ALL

ROOT = Path(__file__).resolve().parents[2]
NOTES = {"Note", "MarkdownNote"}
MODEL_FILE = re.compile(r"\.(pth|pt|bin|ckpt|safetensors)$")
CORE_LOADER_FOLDERS = {"CheckpointLoaderSimple": "checkpoints", "CLIPVisionLoader": "clip_vision"}
PACK_FILE_FOLDERS = {model.name: model.folder for model in ALL}


def test_every_ui_workflow_has_an_api_twin_and_nothing_else_is_shipped():
    assert len(UI_WORKFLOWS) >= 9
    assert {p.name for p in UI_WORKFLOWS} == {p.name for p in API_DIR.glob("*.json")}


def model_files(workflow):
    """{file name: folder} of every model file the workflow's nodes load."""
    files = {}
    for node in workflow["nodes"]:
        for value in node.get("widgets_values") or []:
            if isinstance(value, str) and MODEL_FILE.search(value):
                files[value] = PACK_FILE_FOLDERS.get(value) or CORE_LOADER_FOLDERS[node["type"]]
    return files


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_the_note_names_each_model_file_and_its_folder(path):
    workflow = load(path)
    notes = [node["widgets_values"][0] for node in workflow["nodes"] if node["type"] in NOTES]
    assert len(notes) == 1, "one note per workflow, saying which model files go where"
    files = model_files(workflow)
    assert files, "every shipped workflow loads a model file"
    for name, folder in files.items():
        assert name in notes[0], f"the note does not name {name}"
        assert f"models/{folder}/" in notes[0], f"the note does not say {name} goes in models/{folder}/"


def test_the_readme_shows_each_workflow_beside_its_description():
    readme = (ROOT / "README.md").read_text()
    for path in UI_WORKFLOWS:
        picture = f"docs/workflows/{path.stem}.png"
        assert f"]({picture})" in readme, f"README does not show {picture}"
        assert (ROOT / picture).is_file(), f"{picture} is missing: run tests/host/test_frontend.py to make it"
