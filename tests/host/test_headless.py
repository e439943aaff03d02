"""The headless command line (scripts/style_suite.py) against a real ComfyUI server with fixture
weights: images uploaded and downloaded, inputs set by node title, progress shown, ComfyUI's own
error text on failure, a server started from COMFYUI_PATH, and batches over several servers that
resume after an interruption."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import images
from fixtures.comfy_server import MODEL_FOLDERS, PACK_ROOT, ComfyServer, link_pack, write_extra_model_paths
from style_suite.headless.local import free_port

CLI = PACK_ROOT / "scripts" / "style_suite.py"
SMALL = ["--set", "Sampler.steps=2"]
TEXT_DRIVEN_SMALL = SMALL + ["--set", "Size.width=64", "--set", "Size.height=64"]


def cli(*args, cwd, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, str(CLI), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or os.environ,
    )


def write_photo(path, height, width, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(images.photo(height, width, seed)).save(path)
    return path


def png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return {name: write_photo(folder / f"{name}.png", 72, 104, seed) for seed, name in enumerate(("street", "lake"))}


def test_run_uploads_the_image_sets_it_by_title_and_downloads_what_the_server_saved(server, photos, tmp_path):
    result = cli(
        "run",
        "contour_preview",
        "--content",
        photos["street"],
        "-o",
        tmp_path / "out",
        "--server",
        server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (saved,) = map(Path, result.stdout.split())
    assert saved.parent == tmp_path / "out" and saved.name.startswith("contour_")
    on_server = server.base / "output" / "style_suite" / saved.name
    assert saved.read_bytes() == on_server.read_bytes()
    assert png(saved).shape == (72, 104, 3)  # the uploaded photo's map, not the server's example.png
    uploaded = list((server.base / "input" / "style_suite").glob("street-*.png"))
    assert len(uploaded) == 1 and uploaded[0].read_bytes() == photos["street"].read_bytes()
    assert "[1/3] Content image" in result.stderr and "[3/3] Save map" in result.stderr  # progress, per node


def test_stylize_image_driven_gives_one_image_of_the_content_size(server, sd15_checkpoint, photos, tmp_path):
    result = cli(
        "stylize",
        "--style",
        photos["lake"],
        "--content",
        photos["street"],
        "--prompt",
        "a street",
        "--seed",
        7,
        "--style-strength",
        0.8,
        *SMALL,
        "--server",
        server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    output = tmp_path / "street__lake.png"
    assert result.stdout.split() == [output.name]  # written where the command runs
    image = png(output)
    assert image.shape == (72, 104, 3) and image.std() > 0
    assert "] Sampler  " + "#" * 24 + " 2/2" in result.stderr  # the sampler's steps, in a log


def test_stylize_without_content_is_text_driven(server, sd15_checkpoint, photos, tmp_path):
    result = cli(
        "stylize",
        "--style",
        photos["lake"],
        "--prompt",
        "a house",
        *TEXT_DRIVEN_SMALL,
        "-o",
        tmp_path / "house.png",
        "--server",
        server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert png(tmp_path / "house.png").shape == (64, 64, 3)


def test_a_value_comfyui_refuses_exits_non_zero_with_its_validation_text(server, photos, tmp_path):
    """A file the pack does not list, on a pack node: the node's own validation explains it (the
    headless check before posting names only files it knows, and other nodes' files)."""
    result = cli(
        "stylize",
        "--style",
        photos["lake"],
        "--set",
        "StyleShot Loader.adapter=ip.bin",
        *TEXT_DRIVEN_SMALL,
        "--server",
        server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "ComfyUI refused the workflow: Prompt outputs failed validation" in result.stderr
    assert "node 2 'StyleShot Loader' (StyleSuiteStyleShotLoader)" in result.stderr
    assert "'ip.bin' was not found in the 'styleshot' model folder" in result.stderr
    assert "rename it styleshot_contour_ip.bin" in result.stderr
    assert not list(tmp_path.glob("*.png"))


def test_a_node_that_fails_while_running_exits_non_zero_with_its_message(server, sd15_checkpoint, photos, tmp_path):
    result = cli(
        "stylize",
        "--style",
        photos["lake"],
        "--set",
        "StyleShot Loader.adapter=style_aware_encoder.bin",
        *TEXT_DRIVEN_SMALL,
        "--server",
        server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "node 2 'StyleShot Loader' (StyleSuiteStyleShotLoader) failed: ModelFileError:" in result.stderr
    assert "style_aware_encoder.bin is not a StyleShot adapter" in result.stderr


def test_a_wrong_title_or_a_ui_workflow_is_refused_before_contacting_any_server(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    wrong = cli("run", "contour_preview", "--set", "Sampler.steps=2", "--server", dead, cwd=tmp_path)
    assert wrong.returncode == 1
    assert "no node titled 'Sampler'; its titles are: Content image, Contour, Save map" in wrong.stderr
    ui = cli("run", PACK_ROOT / "workflows" / "contour_preview.json", "--server", dead, cwd=tmp_path)
    assert ui.returncode == 1 and "is a UI-format workflow" in ui.stderr and "Export (API)" in ui.stderr


def test_a_stopped_server_is_named_with_what_to_do(photos, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("stylize", "--style", photos["lake"], "--server", url, cwd=tmp_path)
    assert result.returncode == 1
    assert f"could not reach ComfyUI at {url}" in result.stderr and "Is it running?" in result.stderr
    assert "Traceback" not in result.stderr


def _comfyui_processes(marker: str) -> list:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


def _server_base(root: Path, model_root) -> tuple:
    link_pack(root / "custom_nodes")
    extra = write_extra_model_paths(root / "extra_model_paths.yaml", model_root, MODEL_FOLDERS)
    return root, extra


def test_without_a_server_it_starts_comfyui_from_comfyui_path_and_stops_it(comfyui_path, model_root, photos, tmp_path):
    base, extra = _server_base(tmp_path / "comfy", model_root)
    args = f"--cpu --disable-api-nodes --base-directory {base} --extra-model-paths-config {extra}"
    env = {**os.environ, "COMFYUI_PATH": str(comfyui_path)}
    result = cli(
        "run",
        "contour_preview",
        "--content",
        photos["street"],
        "-o",
        tmp_path / "out",
        "--comfyui-args",
        args,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"starting ComfyUI from {comfyui_path}" in result.stderr
    (saved,) = map(Path, result.stdout.split())
    assert (base / "output" / "style_suite" / saved.name).read_bytes() == saved.read_bytes()
    assert not _comfyui_processes(str(base)), "the ComfyUI it started is still running"


def test_on_a_bare_comfyui_stylize_names_the_missing_files_and_the_command_that_fetches_them(
    comfyui_path, photos, tmp_path
):
    """A ComfyUI with the pack and no model file at all, as a new user has it: the real server's
    /object_info is asked, nothing is posted, and every file is named with the one command to fetch them."""
    base = tmp_path / "bare"
    base.mkdir()
    (base / "extra_model_paths.yaml").write_text("nothing:\n")
    with ComfyServer(comfyui_path, base, base / "extra_model_paths.yaml") as bare:
        result = cli(
            "stylize", "--style", photos["lake"], "--content", photos["street"], "--server", bare.url, cwd=tmp_path
        )
        history = bare.get("/history")
    assert result.returncode == 1
    files = [
        "v1-5-pruned-emaonly-fp16.safetensors",
        "style_aware_encoder.bin",
        "styleshot_contour_ip.bin",
        "ControlNetHED.pth",
    ]
    for name in files:
        assert f"- {name} (node " in result.stderr, result.stderr
    assert f"python scripts/style_suite.py models --download {' '.join(files)}" in result.stderr
    assert "Value not in list" not in result.stderr and history == {}


# --- batch ----------------------------------------------------------------------------------------


def _two_outputs_workflow(path: Path) -> Path:
    """A cheap workflow with the stylize titles: saves the style image and the content's contour."""
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "Style image"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "Content image"}},
        "3": {
            "class_type": "StyleSuiteStyleShotContour",
            "_meta": {"title": "Contour"},
            "inputs": {
                "image": ["2", 0],
                "hed_model": "ControlNetHED.pth",
                "threshold": 200,
                "dilate_size": 3,
                "dilate_iterations": 1,
                "resolution": 0,
            },
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "batch/map"}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "batch/style"}},
    }
    path.write_text(json.dumps(prompt))
    return path


@pytest.fixture(scope="module")
def second_server(comfyui_path, model_root, tmp_path_factory):
    base, extra = _server_base(tmp_path_factory.mktemp("second_comfy"), model_root)
    with ComfyServer(comfyui_path, base, extra) as comfy:
        yield comfy


@pytest.fixture
def inputs(tmp_path):
    contents = [write_photo(tmp_path / "contents" / f"c{i}.png", 48, 64 + 8 * i, 20 + i) for i in range(3)]
    styles = [write_photo(tmp_path / "styles" / f"s{i}.jpg", 40, 40, 30 + i) for i in range(2)]
    return contents, styles


def _prompts_run(comfy) -> int:
    return len(comfy.get("/history?max_items=1000"))


def test_batch_runs_every_pair_spread_over_the_servers(server, second_server, inputs, tmp_path):
    workflow = _two_outputs_workflow(tmp_path / "two_outputs.json")
    before = _prompts_run(server), _prompts_run(second_server)
    result = cli(
        "batch",
        "--styles",
        tmp_path / "styles",
        "--contents",
        tmp_path / "contents",
        "-o",
        tmp_path / "out",
        "--workflow",
        workflow,
        "--server",
        server.url,
        "--server",
        second_server.url,
        "--per-server",
        1,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "6 done, 0 skipped, 0 failed" in result.stderr
    contents, styles = inputs
    for content in contents:
        for style in styles:
            first, second = (
                tmp_path / "out" / f"{content.stem}__{style.stem}.png",
                tmp_path / "out" / f"{content.stem}__{style.stem}-2.png",
            )
            shapes = {png(first).shape, png(second).shape}
            assert shapes == {(48, 64 + 8 * int(content.stem[1]), 3), (40, 40, 3)}  # its map and its style
    ran = _prompts_run(server) - before[0], _prompts_run(second_server) - before[1]
    assert sum(ran) == 6 and min(ran) >= 1, f"prompts per server: {ran}"
    assert not list((tmp_path / "out").glob("*.partial"))


def test_a_batch_resumes_after_an_interruption(server, inputs, tmp_path):
    workflow = _two_outputs_workflow(tmp_path / "two_outputs.json")
    out = tmp_path / "out"
    args = [
        sys.executable,
        str(CLI),
        "batch",
        "--styles",
        tmp_path / "styles",
        "--contents",
        tmp_path / "contents",
        "-o",
        out,
        "--workflow",
        workflow,
        "--server",
        server.url,
        "--per-server",
        1,
    ]
    first_run = subprocess.Popen(list(map(str, args)), cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("c*__s?.png")) and time.monotonic() < deadline:
        time.sleep(0.05)
    first_run.send_signal(signal.SIGINT)  # Ctrl-C
    first_run.wait(60)
    finished = {p: p.stat().st_mtime_ns for p in out.glob("c*__s?.png")}
    assert 1 <= len(finished) < 6, "the interruption came too late to test resuming"

    second_run = cli(*args[2:], cwd=tmp_path)
    assert second_run.returncode == 0, second_run.stderr
    assert f"6 jobs: {len(finished)} already in {out}, {6 - len(finished)} to run" in second_run.stderr
    assert len(list(out.glob("c*__s?.png"))) == 6 and len(list(out.glob("c*__s?-2.png"))) == 6
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished images were not redone


def test_a_batch_reports_what_failed_and_runs_the_rest(server, inputs, tmp_path):
    workflow = _two_outputs_workflow(tmp_path / "two_outputs.json")
    (tmp_path / "styles" / "s9.png").write_bytes(b"not an image")
    dead = f"http://127.0.0.1:{free_port()}"
    result = cli(
        "batch",
        "--styles",
        tmp_path / "styles",
        "--contents",
        tmp_path / "contents" / "c0.png",
        "-o",
        tmp_path / "out",
        "--workflow",
        workflow,
        "--server",
        dead,
        "--server",
        server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "2 done, 0 skipped, 1 failed" in result.stderr
    assert f"{dead}: could not reach ComfyUI" in result.stderr  # its jobs went to the live server
    assert "FAILED c0__s9.png (style" in result.stderr and "node 1 'Style image' (LoadImage) failed" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("c0__s?.png")) == ["c0__s0.png", "c0__s1.png"]
