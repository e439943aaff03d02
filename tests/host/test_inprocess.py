"""The pack inside a real ComfyUI, in this process: registration, folders, nodes on real files."""

import asyncio

import numpy as np
import pytest
import torch

from fixtures import images, reference
from fixtures.annotators import hed_state_dict

PREPROCESSORS = {"StyleSuiteStyleShotContour", "StyleSuiteHEDSoftEdges", "StyleSuiteLineart"}


def test_every_node_is_registered_and_documented(comfy):
    comfy_nodes, pack = comfy
    assert set(pack.NODE_CLASS_MAPPINGS) >= PREPROCESSORS
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert key.startswith("StyleSuite")
        assert comfy_nodes.NODE_CLASS_MAPPINGS[key] is cls
        assert pack.NODE_DISPLAY_NAME_MAPPINGS[key]
        assert cls.DESCRIPTION and cls.CATEGORY.startswith("style_suite/")
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
        for group in cls.INPUT_TYPES().values():
            for name, spec in group.items():
                assert spec[1].get("tooltip"), f"{key}.{name} has no tooltip"


def test_model_folders_are_registered_without_dropping_extra_paths(comfy, model_root):
    import folder_paths

    annotators = folder_paths.get_folder_paths("annotators")
    assert str(model_root / "annotators") in annotators
    assert any(p.endswith("models/annotators") for p in annotators)
    for key in ("styleshot", "inst"):
        assert folder_paths.get_folder_paths(key)
    assert {"ControlNetHED.pth", "sk_model.pth", "sk_model2.pth"} <= set(folder_paths.get_filename_list("annotators"))


def node(comfy, key):
    return comfy[1].NODE_CLASS_MAPPINGS[key]


def test_contour_node_is_styleshot_exact_on_a_real_file(comfy):
    photo = images.photo(60, 84, 21)
    image = images.comfy_image(photo)
    before = image.clone()
    (result,) = node(comfy, "StyleSuiteStyleShotContour")().detect(image, "ControlNetHED.pth", 200, 3, 1, 0)
    assert torch.equal(image, before)
    assert result.dtype == torch.float32 and result.device.type == "cpu" and tuple(result.shape) == (1, 60, 84, 3)
    expected = reference.soft_hed_contour(hed_state_dict(), photo)
    np.testing.assert_array_equal((result[0, ..., 0] * 255).round().byte().numpy(), expected)


def test_networks_are_read_once_while_comfyui_holds_them_and_go_with_them(comfy, monkeypatch):
    """As ComfyUI's LoRA loader keeps its LoRA: the node object keeps its network, so a new image
    does not read the file again; another node on the same file shares it; once ComfyUI drops the
    node objects (/free, cache eviction), nothing of the pack holds it."""
    import gc

    pack = comfy[1]
    calls = []
    real = pack.loaders.annotators.load_lineart
    monkeypatch.setattr(pack.nodes.preprocessors, "load_lineart", lambda path: calls.append(path) or real(path))
    lineart = node(comfy, "StyleSuiteLineart")()
    first = lineart.detect(images.comfy_image(images.photo(32, 32, 1)), "sk_model2.pth", False, 0)[0]
    lineart.detect(images.comfy_image(images.photo(32, 32, 2)), "sk_model2.pth", False, 0)
    other = node(comfy, "StyleSuiteLineart")()
    again = other.detect(images.comfy_image(images.photo(32, 32, 1)), "sk_model2.pth", False, 0)[0]
    assert torch.equal(first, again)
    assert len(calls) == 1 and other.loaded is lineart.loaded
    held = [k for k in pack.nodes.host._loaded if k[1].endswith("sk_model2.pth")]
    del lineart, other
    gc.collect()
    assert len(held) == 1 and held[0] not in pack.nodes.host._loaded
    node(comfy, "StyleSuiteLineart")().detect(images.comfy_image(images.photo(32, 32, 1)), "sk_model2.pth", False, 0)
    assert len(calls) == 2


def test_the_pack_refuses_to_load_on_a_comfyui_older_than_it_needs(comfy, monkeypatch, tmp_path, caplog):
    """The `comfy` fixture loaded it on this ComfyUI (0.8.0); with the version set lower, loading
    fails before any node registers, and ComfyUI's log says what to do."""
    import comfyui_version

    from fixtures.comfy_server import link_pack

    comfy_nodes, _ = comfy
    registered = dict(comfy_nodes.NODE_CLASS_MAPPINGS)
    for version in ("0.3.10", "0.2.7"):
        monkeypatch.setattr(comfyui_version, "__version__", version)
        with caplog.at_level("WARNING"):
            assert not asyncio.run(comfy_nodes.load_custom_node(str(link_pack(tmp_path / version))))
        assert (
            f"Style Suite needs ComfyUI 0.3.11 or newer, and this ComfyUI is {version}: update ComfyUI" in caplog.text
        )
    assert comfy_nodes.NODE_CLASS_MAPPINGS == registered


def test_progress_counts_each_image_once_and_cancel_is_honoured(comfy, progress_reports):
    import comfy.model_management as mm

    batch = images.comfy_image(*[images.photo(24, 24, s) for s in range(3)])
    node(comfy, "StyleSuiteHEDSoftEdges")().detect(batch, "ControlNetHED.pth", False, 0)
    assert progress_reports == [(1, 3), (2, 3), (3, 3)]
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            node(comfy, "StyleSuiteHEDSoftEdges")().detect(batch, "ControlNetHED.pth", False, 0)
    finally:
        mm.interrupt_current_processing(False)


def test_a_lineart_file_in_the_hed_slot_names_the_expected_layout(comfy):
    with pytest.raises(ValueError, match="sk_model.pth is not a HED network.*looks like the lineart generator"):
        node(comfy, "StyleSuiteStyleShotContour")().detect(
            images.comfy_image(images.photo(8, 8)), "sk_model.pth", 200, 3, 1, 0
        )


def test_rgba_grey_and_odd_sizes_come_back_at_the_input_size(comfy):
    lineart = node(comfy, "StyleSuiteLineart")()
    for channels, size in ((4, (37, 53)), (1, (30, 45))):
        image = images.comfy_image(images.photo(*size, 3, channels=channels))
        for resolution in (0, 64):
            (result,) = lineart.detect(image, "sk_model.pth", True, resolution)
            assert tuple(result.shape) == (1, *size, 3)


def test_an_empty_batch_is_refused(comfy):
    with pytest.raises(ValueError, match="the image batch is empty"):
        node(comfy, "StyleSuiteLineart")().detect(torch.zeros(0, 8, 8, 3), "sk_model.pth", False, 0)
