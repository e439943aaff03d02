"""Memory ComfyUI can manage: the pack's networks live as ComfyUI's own models do. /free and cache
eviction give back what every shipped workflow loaded, an unchanged graph never reads a file again,
and running out of memory half-way through a load is ComfyUI's own OOM, after which the next prompt
runs. The servers start through the pack's launcher (headless/local.py), which sets glibc's mmap
threshold so that freed weights leave the process (README, "Memory")."""

import copy
import shutil
import time
from pathlib import Path

import pytest

from fixtures.comfy_server import MODEL_FOLDERS, ComfyServer, write_extra_model_paths
from fixtures.memory import status_mib
from fixtures.model_root import CHECKPOINT, INPUT_IMAGE
from fixtures.shipped_workflows import API_DIR, API_WORKFLOWS, at_test_scale, load, titled

TOLERANCE_MIB = 512  # the bound: within 0.5 GiB of the server's size before its first prompt
FAULT_NODES = Path(__file__).resolve().parents[1] / "fixtures" / "fault_test_nodes"
IMAGE_DRIVEN = API_DIR / "styleshot_image_driven_contour.json"
READING = "Style Suite: reading "  # what the pack logs when it reads a model file


def text_to_image(seed=0):
    """ComfyUI's own default graph (checkpoint, two prompts, KSampler, VAE Decode, Save Image) at
    the test scale."""
    sampler = {"seed": seed, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a house"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                **sampler,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "plain"}},
    }


SMALL_PROMPT = {  # loads nothing: lets the server act on /free's flags at once
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}


def resident_mib(server):
    return status_mib("VmRSS", server.process.pid)


def settled_mib(server, seconds=15):
    """The server's resident size once it stops shrinking: ComfyUI collects garbage just after a
    prompt is reported done, or up to 10 s later."""
    sizes = [resident_mib(server)]
    for _ in range(int(seconds / 0.5)):
        time.sleep(0.5)
        sizes.append(resident_mib(server))
        if len(sizes) >= 4 and max(sizes[-4:]) - min(sizes[-4:]) < 8:
            break
    return sizes[-1]


def freed_mib(server):
    """The server's resident size after /free (both flags) and one small prompt: ComfyUI unloads its
    models, drops its caches and collects garbage after that prompt."""
    status, _ = server.post("/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    server.run(SMALL_PROMPT)
    return settled_mib(server)


def start_server(comfyui_path, model_root, input_dir, base, extra_args=()):
    """A fresh server with the fixture model folders and the fault test nodes beside the pack, and
    its resident size before its first prompt."""
    (base / "input").mkdir()
    (base / "input" / INPUT_IMAGE).write_bytes((input_dir / INPUT_IMAGE).read_bytes())
    shutil.copytree(FAULT_NODES, base / "custom_nodes" / FAULT_NODES.name)
    extra = write_extra_model_paths(base / "extra_model_paths.yaml", model_root, MODEL_FOLDERS)
    server = ComfyServer(comfyui_path, base, extra, extra_args=extra_args)
    return server, settled_mib(server, seconds=3)


@pytest.fixture(scope="module")
def fresh_server(
    comfyui_path, model_root, sd15_checkpoint, sdxl_checkpoint, clip_vision_l, input_dir, tmp_path_factory
):
    server, started = start_server(comfyui_path, model_root, input_dir, tmp_path_factory.mktemp("memory_base"))
    yield server, started
    server.stop()


def test_free_gives_back_what_every_shipped_workflow_loaded(fresh_server):
    server, started = fresh_server
    server.run(text_to_image())
    plain = freed_mib(server)
    for path in API_WORKFLOWS:
        server.run(at_test_scale(load(path)))
    after_pack = freed_mib(server)
    print(
        f"\nserver RSS {started:.0f} MiB after start; after ComfyUI's own text-to-image and /free: "
        f"+{plain - started:.0f} MiB; after every shipped workflow and /free: +{after_pack - started:.0f} MiB"
    )
    assert after_pack - started <= TOLERANCE_MIB, (
        f"the server stays {after_pack - started:.0f} MiB above its size before the first prompt after /free "
        f"(after ComfyUI's own graph: {plain - started:.0f} MiB)"
    )


def test_an_unchanged_graph_reads_each_file_once(fresh_server):
    server, _ = fresh_server
    prompt = at_test_scale(load(IMAGE_DRIVEN))
    read_before = server.log().count(READING)
    server.run(prompt)
    first = server.log().count(READING) - read_before
    reseeded = copy.deepcopy(prompt)
    titled(reseeded, "Sampler")["inputs"]["seed"] += 1  # samples again; the loaders' inputs are unchanged
    server.run(reseeded)
    assert first == 3  # style_aware_encoder.bin, styleshot_contour_ip.bin, ControlNetHED.pth
    assert server.log().count(READING) - read_before == first


def test_running_out_of_memory_half_way_through_a_load_is_comfyuis_oom_and_the_next_prompt_runs(fresh_server):
    server, _ = fresh_server
    prompt = at_test_scale(load(IMAGE_DRIVEN))
    freed_mib(server)  # drops the cached loader outputs: the next run reads the files again
    server.run({"1": {"class_type": "FaultTestFailNextLoad", "inputs": {"run": 1}}})
    with pytest.raises(AssertionError) as failure:
        server.run(prompt)
    message = str(failure.value)
    assert '"node_type": "StyleSuiteStyleShotLoader"' in message
    assert '"exception_type": "torch.OutOfMemoryError"' in message
    assert "This error means you ran out of memory on your GPU" in message  # ComfyUI's own OOM tips
    assert "Got an OOM, unloading all loaded models." in server.log()
    server.run(prompt)  # nothing half-loaded stays behind


@pytest.fixture(scope="module")
def uncached_server(comfyui_path, model_root, sd15_checkpoint, input_dir, tmp_path_factory, fresh_server):
    fresh_server[0].stop()  # one server at a time
    base = tmp_path_factory.mktemp("uncached_base")
    server, started = start_server(comfyui_path, model_root, input_dir, base, extra_args=["--cache-none"])
    yield server, started
    server.stop()


def test_without_a_cache_the_networks_go_when_the_prompt_ends(uncached_server):
    server, started = uncached_server
    server.run(at_test_scale(load(IMAGE_DRIVEN)))
    server.run(SMALL_PROMPT)
    after = settled_mib(server)
    print(
        f"\n--cache-none server RSS {started:.0f} MiB after start; after image-driven StyleShot: +{after - started:.0f}"
    )
    assert after - started <= TOLERANCE_MIB
