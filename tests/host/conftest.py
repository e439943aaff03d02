"""Host fixtures: the ComfyUI checkout named by COMFYUI_PATH, fixture model files, an in-process
ComfyUI with the pack loaded, and a ComfyUI server running the pack."""

import gc
import os
from pathlib import Path

import pytest

from fixtures import model_root as model_files
from fixtures import sd15_unet
from fixtures.comfy_inprocess import comfyui_with_pack
from fixtures.comfy_server import MODEL_FOLDERS, ComfyServer, write_extra_model_paths
from fixtures.model_root import INPUT_IMAGE
from fixtures.styleshot_nodes import LATENT, encode, forward, install_ip_adapter, load, style_image, tensors


@pytest.fixture(scope="session")
def comfyui_path():
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        pytest.skip("COMFYUI_PATH is not set: point it at a ComfyUI checkout to run the host tests (README, 'Tests')")
    if not (Path(path) / "main.py").is_file():
        pytest.fail(f"COMFYUI_PATH={path} has no main.py: it must be the root of a ComfyUI checkout")
    return Path(path)


@pytest.fixture(scope="session")
def model_root(tmp_path_factory):
    """What extra_model_paths.yaml points at: annotators/ with the three annotator files,
    styleshot/ with StyleShot's files, inst/ with an InST embeddings.pt, and checkpoints/ and
    clip_vision/ (their files come from `sd15_checkpoint`, `sdxl_checkpoint`, `clip_vision_l`)."""
    return model_files.write_pack_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def sd15_checkpoint(model_root):
    """model_files.write_sd15: written once per session, only for tests that sample."""
    return model_files.write_sd15(model_root)


@pytest.fixture(scope="session")
def sdxl_checkpoint(model_root):
    return model_files.write_sdxl(model_root)


@pytest.fixture(scope="session")
def clip_vision_l(model_root):
    return model_files.write_clip_vision(model_root)


@pytest.fixture(scope="session")
def input_dir(tmp_path_factory):
    return model_files.write_input_image(tmp_path_factory.mktemp("input"))


@pytest.fixture(scope="session")
def comfy(comfyui_path, model_root, input_dir, tmp_path_factory):
    """ComfyUI's `nodes` module, in this process, on the CPU, with the pack loaded from a folder
    whose name has dashes, after an extra_model_paths-style entry for `annotators`."""
    try:
        comfy_nodes, pack = comfyui_with_pack(
            comfyui_path, model_root, tmp_path_factory.mktemp("custom_nodes"), core_extras=True
        )
    except ImportError as error:
        pytest.fail(
            f"ComfyUI does not import with this Python ({error}): run the host tests with ComfyUI's own environment"
        )
    import folder_paths

    folder_paths.set_input_directory(str(input_dir))
    return comfy_nodes, pack


@pytest.fixture(scope="module")
def server(comfyui_path, model_root, sd15_checkpoint, sdxl_checkpoint, clip_vision_l, input_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "input").mkdir()
    (base / "input" / INPUT_IMAGE).write_bytes((input_dir / INPUT_IMAGE).read_bytes())
    extra = write_extra_model_paths(base / "extra_model_paths.yaml", model_root, MODEL_FOLDERS)
    comfy_server = ComfyServer(comfyui_path, base, extra)
    yield comfy_server
    comfy_server.stop()  # after its module: the models it loaded do not stay in memory beside later modules


@pytest.fixture
def progress_reports(comfy):
    """Every (value, total) ComfyUI's progress bars report while the test runs, in order: what the
    frontend's bar shows after each report."""
    from comfy.utils import set_progress_bar_global_hook

    reports = []
    set_progress_bar_global_hook(lambda value, total, preview, node_id=None: reports.append((value, total)))
    yield reports
    set_progress_bar_global_hook(None)


# --- StyleShot nodes on a full-size random SD1.5 UNet (module scope: freed after each module) ------


@pytest.fixture(scope="module")
def pack(comfy):
    return comfy[1]


@pytest.fixture(scope="module")
def styleshot(pack):
    """STYLESHOT from the contour ip.bin look-alike (with its content-fusion encoder)."""
    return load(pack)


@pytest.fixture(scope="module")
def style(pack, styleshot):
    """One style image, shuffled with seed 0: cond [1, 6, 768]."""
    return encode(pack, styleshot, style_image(3))


@pytest.fixture(scope="module")
def unets(comfy):
    """(diffusers UNet, the same weights as a ComfyUI MODEL): full-size SD1.5, random weights."""
    import comfy.model_management as mm

    unet = sd15_unet.diffusers_sd15_unet(seed=0)
    yield unet, sd15_unet.comfy_model_from_diffusers(unet)
    mm.unload_all_models()  # ComfyUI keeps sampled models loaded: free the 3.4 GB UNet for the next module
    gc.collect()


@pytest.fixture(scope="module")
def sd15(unets):
    model = unets[1]
    assert type(model.model).__name__ == "BaseModel" and type(model.model.model_config).__name__ == "SD15"
    return model


@pytest.fixture(scope="module")
def ip_unet(unets, styleshot):
    """The diffusers UNet with IP-Adapter processors carrying the adapter's weights."""
    return install_ip_adapter(unets[0], styleshot.adapter.model)


@pytest.fixture(scope="module")
def batch():
    """x [2, 4, 8, 8] and text context [2, 77, 768] (negative, positive) for [uncond, cond] calls."""
    return tensors(1, 2, *LATENT), tensors(2, 2, 77, 768)


@pytest.fixture(scope="module")
def plain(sd15, batch):
    return forward(sd15, *batch, [1, 0])
