"""The pack in a real ComfyUI server: registration over HTTP, clean import, and every API-format
workflow of workflows/api/ executed with fixture weights, pixel-equal to the in-process result."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.comfy_inprocess import run_workflow
from fixtures.comfy_server import PACK_FOLDER_NAME
from PIL import Image

API_DIR = Path(__file__).resolve().parents[2] / "workflows" / "api"
API_WORKFLOWS = sorted(API_DIR.glob("*.json"))


def test_object_info_lists_every_node_of_the_pack(server, comfy):
    info = server.get("/object_info")
    pack = comfy[1]
    for key, name in pack.NODE_DISPLAY_NAME_MAPPINGS.items():
        assert key in info, f"{key} is missing from /object_info"
        assert info[key]["display_name"] == name
        assert info[key]["python_module"] == f"custom_nodes.{PACK_FOLDER_NAME}"
    hed_choices = info["StyleSuiteStyleShotContour"]["input"]["required"]["hed_model"][0]
    assert "ControlNetHED.pth" in hed_choices  # found through extra_model_paths.yaml


def test_the_log_shows_no_import_failure_of_the_pack(server):
    log = server.log()
    assert f"custom_nodes/{PACK_FOLDER_NAME}" in log  # the import-times table lists the pack
    assert "Unable to parse pyproject.toml" not in log  # our registry metadata parses
    for line in log.splitlines():
        if PACK_FOLDER_NAME in line:
            assert "IMPORT FAILED" not in line and "Cannot import" not in line, line


@pytest.mark.parametrize("path", API_WORKFLOWS, ids=lambda p: p.stem)
def test_api_workflow_runs_and_matches_the_in_process_result(server, comfy, path):
    prompt = json.loads(path.read_text())
    entry = server.run(prompt)
    expected = run_workflow(prompt, comfy[0].NODE_CLASS_MAPPINGS)
    assert expected, f"{path.name} has no output node"
    for node_id, inputs in expected.items():
        saved = entry["outputs"][node_id]["images"]
        assert len(saved) == inputs["images"].shape[0]
        for image, tensor in zip(saved, inputs["images"]):
            served = np.asarray(Image.open(io.BytesIO(server.view(image))))
            in_process = np.clip(255.0 * tensor.cpu().numpy(), 0, 255).astype(np.uint8)  # as SaveImage
            np.testing.assert_array_equal(served, in_process)


def test_a_posted_file_name_outside_the_model_folder_is_refused_before_running(server):
    prompt = json.loads((API_DIR / "contour_preview.json").read_text())
    prompt["2"]["inputs"]["hed_model"] = "../../../etc/passwd"
    status, answer = server.post("/prompt", {"prompt": prompt})
    assert status == 400
    details = json.dumps(answer["node_errors"])
    assert "was not found in the 'annotators' model folder" in details and "ControlNetHED.pth" in details
