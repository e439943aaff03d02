"""The pack in a real ComfyUI server: registration over HTTP, clean import, and every API-format
workflow of workflows/api/ executed with fixture weights. Workflows without a sampler must be
pixel-equal to the in-process result; sampling workflows run at a CPU-test size (2 steps, and 64x64
unless the size comes from the content image, set by node title) and must save their PNG."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from fixtures.comfy_inprocess import run_workflow
from fixtures.comfy_server import PACK_FOLDER_NAME
from fixtures.shipped_workflows import (
    API_DIR,
    API_WORKFLOWS,
    TEST_SIZE,
    assert_saved_pngs,
    at_test_scale,
    load,
    samples,
    saved_pngs,
    titled,
)

PREVIEW_WORKFLOWS = [p for p in API_WORKFLOWS if not samples(load(p))]
SAMPLING_WORKFLOWS = [p for p in API_WORKFLOWS if samples(load(p))]


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


@pytest.mark.parametrize("path", PREVIEW_WORKFLOWS, ids=lambda p: p.stem)
def test_api_workflow_runs_and_matches_the_in_process_result(server, comfy, path):
    prompt = load(path)
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


def test_every_api_workflow_is_run_by_a_test():
    assert set(PREVIEW_WORKFLOWS) | set(SAMPLING_WORKFLOWS) == set(API_WORKFLOWS)
    assert {
        "styleshot_text_driven",
        "styleshot_image_driven_contour",
        "styleshot_image_driven_lineart",
        "inst_style_transfer",
    } <= {p.stem for p in SAMPLING_WORKFLOWS}


@pytest.mark.parametrize("path", SAMPLING_WORKFLOWS, ids=lambda p: p.stem)
def test_sampling_workflow_runs_on_the_server_and_saves_its_png(server, path):
    prompt = at_test_scale(load(path))
    assert_saved_pngs(server, prompt, server.run(prompt))


def _text_driven():
    return at_test_scale(load(API_DIR / "styleshot_text_driven.json"))


def _only_png(server, prompt):
    ((file, _),) = next(iter(saved_pngs(server, prompt, server.run(prompt)).values()))
    with Image.open(file) as png:
        return np.asarray(png.convert("RGB"))


def test_text_driven_runs_with_the_stage1_adapter_and_the_adapter_changes_the_image(server):
    """The stage-1 ip.bin (no content-fusion encoder) carries the whole style adapter, which is all
    text-driven mode uses: it is accepted and gives another image than the contour release's."""
    contour, stage1 = _text_driven(), _text_driven()
    titled(stage1, "StyleShot Loader")["inputs"]["adapter"] = "styleshot_stage1_ip.bin"
    for prompt, name in ((contour, "contour"), (stage1, "stage1")):  # new prefixes: no fully cached prompt
        titled(prompt, "Save image")["inputs"]["filename_prefix"] = f"style_suite/adapter_{name}"
    first, second = _only_png(server, contour), _only_png(server, stage1)
    assert first.shape == second.shape == (TEST_SIZE, TEST_SIZE, 3)
    assert not np.array_equal(first, second)


def test_a_missing_adapter_is_refused_before_running_with_the_folder_to_put_it_in(server, model_root):
    prompt = _text_driven()
    titled(prompt, "StyleShot Loader")["inputs"]["adapter"] = "ip.bin"  # the published name, not renamed
    status, answer = server.post("/prompt", {"prompt": prompt})
    assert status == 400
    loader_id = next(k for k, n in prompt.items() if n["class_type"] == "StyleSuiteStyleShotLoader")
    assert set(answer["node_errors"]) == {loader_id}
    details = json.dumps(answer["node_errors"][loader_id])
    assert "'ip.bin' was not found in the 'styleshot' model folder" in details
    assert "rename it styleshot_contour_ip.bin" in details
    assert "https://huggingface.co/Gaojunyao/StyleShot/resolve/main/pretrained_weight/ip.bin" in details
    assert json.dumps(str(model_root / "styleshot"))[1:-1] in details  # the folders searched


@pytest.mark.parametrize("encoder", ["encoder.bin", "style_aware_encoder.bin"])
def test_each_loader_input_gets_its_own_message(server, encoder):
    """ComfyUI lists one validation answer under every input of the loader: it names each failing
    input with that input's own file, and nothing for an input that is fine."""
    prompt = _text_driven()
    titled(prompt, "StyleShot Loader")["inputs"].update(style_encoder=encoder, adapter="ip.bin")
    status, answer = server.post("/prompt", {"prompt": prompt})
    assert status == 400
    (errors,) = [error["errors"] for error in answer["node_errors"].values()]
    assert {error["extra_info"]["input_name"] for error in errors} == {"style_encoder", "adapter"}
    for error in errors:
        assert (
            "adapter: 'ip.bin' was not found in the 'styleshot' model folder; this input needs styleshot_contour_ip.bin"
            in error["details"]
        )
        encoder_message = (
            "style_encoder: 'encoder.bin' was not found in the 'styleshot' model folder; "
            "this input needs style_aware_encoder.bin"
        )
        assert (encoder_message in error["details"]) == (encoder == "encoder.bin")


def test_image_driven_with_a_style_only_adapter_fails_naming_the_releases(server):
    prompt = at_test_scale(load(API_DIR / "styleshot_image_driven_contour.json"))
    titled(prompt, "StyleShot Loader")["inputs"]["adapter"] = "styleshot_stage1_ip.bin"
    with pytest.raises(AssertionError) as failure:
        server.run(prompt)
    message = str(failure.value)
    assert "the adapter 'styleshot_stage1_ip.bin' has none" in message
    assert "Gaojunyao/StyleShot/resolve" in message and "Gaojunyao/StyleShot_lineart/resolve" in message
