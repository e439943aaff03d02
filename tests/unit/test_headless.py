"""The headless client without ComfyUI: its WebSocket against aiohttp's server, the client against a
stand-in server (fixtures/fake_comfy.py), workflows set by title, progress, and batch planning.
tests/host/test_headless.py runs the same command line against a real ComfyUI."""

import io
import json
import shlex
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from aiohttp import WSMsgType, web

from fixtures.fake_comfy import FakeComfy, ServerThread
from fixtures.hub import Hub
from style_suite.headless import batch, workflow
from style_suite.headless.cli import main
from style_suite.headless.client import Comfy, ComfyError, ServerUnreachable
from style_suite.headless.local import free_port
from style_suite.headless.progress import ProgressLine
from style_suite.headless.websocket import WebSocket

TEXT_DRIVEN = workflow.load("styleshot_text_driven")


# --- WebSocket, against aiohttp's server -----------------------------------------------------------


class Peer:
    """An aiohttp WebSocket server that plays a test's script (which records what it receives)."""

    def __init__(self, script):
        self.script, self.received = script, []
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        self.url = f"ws://127.0.0.1:{ServerThread(app).port}/ws?clientId=abc"

    async def _ws(self, request):
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.received.append(("query", request.query["clientId"]))
        await self.script(ws)
        return ws


def test_websocket_reads_text_of_every_length_binary_and_answers_pings():
    long_text = "x" * 70_000  # a 64-bit length field
    medium = json.dumps({"type": "progress", "data": {"value": 1, "max": 3}})

    async def script(ws):
        await ws.send_str("short")
        await ws.send_str(medium * 10)  # a 16-bit length field
        await ws.send_bytes(b"\x00\x00\x00\x01\x00\x00\x00\x02png")
        await ws.ping(b"are you there")
        answer = await ws.receive()  # the client answers while it reads on
        peer.received.append((answer.type, answer.data))
        await ws.send_str(long_text)
        await ws.close()

    peer = Peer(script)
    with WebSocket(peer.url, timeout=10) as ws:
        received = [ws.receive() for _ in range(4)] + [ws.receive()]
    assert received == ["short", medium * 10, b"\x00\x00\x00\x01\x00\x00\x00\x02png", long_text, None]
    assert ("query", "abc") in peer.received
    assert (WSMsgType.PONG, b"are you there") in peer.received  # masked and understood by aiohttp


def test_websocket_refuses_a_server_that_does_not_upgrade():
    server = FakeComfy()
    try:
        with pytest.raises(ConnectionError, match="instead of switching to a WebSocket"):
            WebSocket(server.url.replace("http", "ws") + "/system_stats")
    finally:
        server.stop()


# --- The client, against a stand-in server --------------------------------------------------------


@pytest.fixture
def fake():
    servers = []

    def start(**behaviour):
        servers.append(FakeComfy(**behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_run_follows_its_own_prompt_to_the_end_and_returns_the_saved_images(fake):
    server = fake()
    seen = []
    client = Comfy(server.url)
    images = client.run(TEXT_DRIVEN, lambda kind, data: seen.append((kind, data.get("node"))))
    assert images == [{"filename": "styleshot_00001_.png", "subfolder": "style_suite", "type": "output"}]
    assert client.view(images[0]) == server.files["style_suite", "styleshot_00001_.png"]
    assert seen[0] == ("execution_start", None) and seen[-1] == ("executing", None)
    assert ("executing", None) not in seen[:-1]  # another prompt's end did not end this one
    assert seen.count(("progress", "9")) == 3  # the KSampler's steps
    assert server.prompts == [TEXT_DRIVEN]


def test_a_refused_prompt_raises_comfyuis_validation_text_naming_nodes_by_title(fake):
    answer = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "2": {
                "class_type": "StyleSuiteStyleShotLoader",
                "dependent_outputs": ["11"],
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "adapter: 'ip.bin' not in ['a.bin', 'b.bin']" + ", 'c.bin'" * 300,
                        "extra_info": {},
                    }
                ],
            }
        },
    }
    server = fake(refuse=lambda prompt: answer)
    with pytest.raises(ComfyError) as error:
        Comfy(server.url).run(TEXT_DRIVEN)
    lines = str(error.value).splitlines()
    assert lines[0] == "ComfyUI refused the workflow: Prompt outputs failed validation"
    assert lines[1].startswith(
        "  node 2 'StyleShot Loader' (StyleSuiteStyleShotLoader): Value not in list: "
        "adapter: 'ip.bin' not in ['a.bin', 'b.bin']"
    )
    assert lines[1].endswith(" ...") and len(lines[1]) < 800  # a long file list is cut


def test_an_execution_error_raises_the_nodes_own_message(fake):
    error = {
        "node_id": "2",
        "node_type": "StyleSuiteStyleShotLoader",
        "executed": [],
        "traceback": ["..."],
        "exception_type": "custom_nodes.style-suite.loaders.weights.ModelFileError",
        "exception_message": "x.bin is not a StyleShot adapter: 3 missing keys.",
    }
    server = fake(fail=lambda prompt: error)
    with pytest.raises(ComfyError) as raised:
        Comfy(server.url).run(TEXT_DRIVEN)
    assert str(raised.value) == (
        "node 2 'StyleShot Loader' (StyleSuiteStyleShotLoader) failed: ModelFileError: "
        "x.bin is not a StyleShot adapter: 3 missing keys."
    )


def test_a_prompt_marked_failed_without_an_error_names_the_prompt_and_its_events(fake):
    server = fake()
    server.history["p1"] = {
        "outputs": {},
        "status": {
            "status_str": "error",
            "completed": False,
            "messages": [["execution_start", {}], ["execution_interrupted", {}]],
        },
    }
    with pytest.raises(ComfyError) as raised:
        Comfy(server.url).saved_images(TEXT_DRIVEN, "p1")
    assert str(raised.value) == (
        "ComfyUI marked prompt p1 as failed without an error message (execution_start, "
        "execution_interrupted): the server's console says why"
    )


def test_a_server_that_drops_the_connection_mid_run_is_reported_as_unreachable(fake):
    server = fake(close_during_run=True)
    with pytest.raises(ServerUnreachable, match="closed the connection while running the prompt"):
        Comfy(server.url).run(TEXT_DRIVEN)


def test_a_server_that_is_not_there_says_what_to_do():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachable) as error:
        Comfy(url).check()
    assert f"could not reach ComfyUI at {url}" in str(error.value)
    assert "--server" in str(error.value) and "COMFYUI_PATH" in str(error.value)


def test_uploads_are_multipart_as_comfyui_reads_them_and_named_by_content(fake, tmp_path):
    server = fake()
    first, second = tmp_path / "a" / "style.PNG", tmp_path / "b" / "style.PNG"
    for path, data in ((first, b"first image"), (second, b"second image")):
        path.parent.mkdir()
        path.write_bytes(data)
    client = Comfy(server.url)
    names = client.upload_image(first), client.upload_image(second), client.upload_image(first)
    assert names[0] == names[2] != names[1]  # same content, same name; same file name, other content: another
    assert all(name.startswith("style_suite/style-") and name.endswith(".png") for name in names)
    assert server.uploads[("style_suite", names[0].split("/")[1])] == b"first image"
    assert server.uploads[("style_suite", names[1].split("/")[1])] == b"second image"


# --- Workflows set by title -----------------------------------------------------------------------


def test_settings_take_the_type_of_the_input_and_leave_the_shipped_file_alone():
    chosen = [
        workflow.parse_setting(s)
        for s in ("Sampler.steps=20", "sampler.cfg=4.5", "Prompt.text=42", "StyleShot Encode Style.shuffle=false")
    ]
    ready = workflow.configure(TEXT_DRIVEN, chosen, upload=None)
    assert ready["9"]["inputs"]["steps"] == 20 and ready["9"]["inputs"]["cfg"] == 4.5
    assert ready["6"]["inputs"]["text"] == "42" and ready["4"]["inputs"]["shuffle"] is False
    assert TEXT_DRIVEN["9"]["inputs"]["steps"] == 30  # a copy was changed


@pytest.mark.parametrize(
    "setting, message",
    [
        ("Sampler.steps=many", "Sampler.steps takes a whole number, not 'many'"),
        ("Sampler.model=x", "input 'model' of node 'Sampler' comes from another node"),
        ("Sampler.stepz=3", "node 'Sampler' (KSampler) has no input 'stepz' in this workflow; it has: seed, steps"),
        (
            "Sampelr.steps=3",
            "the workflow has no node titled 'Sampelr'; its titles are: Load Checkpoint, Negative prompt",
        ),
        ("Sampler=3", "write it as 'Node title.input=value'"),
    ],
)
def test_wrong_settings_are_refused_with_what_exists(setting, message):
    with pytest.raises(ComfyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        workflow.configure(TEXT_DRIVEN, [workflow.parse_setting(setting)], upload=None)


def test_a_load_image_set_to_a_local_file_is_uploaded_and_a_server_name_is_kept(tmp_path):
    local = tmp_path / "mine.png"
    local.write_bytes(b"png")
    uploaded = []
    ready = workflow.configure(
        TEXT_DRIVEN,
        [("Style image", "image", str(local))],
        upload=lambda path: uploaded.append(path) or "style_suite/mine-1.png",
    )
    assert uploaded == [local] and ready["3"]["inputs"]["image"] == "style_suite/mine-1.png"
    kept = workflow.configure(TEXT_DRIVEN, [("Style image", "image", "example.png")], upload=None)
    assert kept["3"]["inputs"]["image"] == "example.png"


def test_ui_format_and_broken_files_are_refused(tmp_path):
    with pytest.raises(ComfyError, match="is a UI-format workflow.*Export \\(API\\)"):
        workflow.load(str(workflow.WORKFLOWS.parent / "contour_preview.json"))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ComfyError, match="is not valid JSON"):
        workflow.load(str(tmp_path / "broken.json"))
    with pytest.raises(ComfyError, match="no shipped workflow of that name \\(shipped: contour_preview, "):
        workflow.load("contour")


# --- Progress -------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def _feed(progress):
    progress("execution_cached", {"nodes": ["1", "2"]})
    progress("executing", {"node": "9"})
    for step in range(14, 17):
        progress("progress", {"value": step, "max": 30})
    progress("executing", {"node": "10"})
    progress.finish()


def test_progress_in_a_log_gives_a_line_per_node_and_quarter_of_steps_counting_cached_ones():
    log = Terminal(tty=False)
    _feed(ProgressLine(TEXT_DRIVEN, log))
    assert log.getvalue().splitlines() == [
        "[ 3/11] Sampler",
        "[ 3/11] Sampler  ###########............. 14/30",
        "[ 3/11] Sampler  ############............ 15/30",
        "[ 4/11] VAE Decode",
    ]


def test_progress_on_a_terminal_redraws_one_line_with_the_steps():
    screen = Terminal(tty=True)
    _feed(ProgressLine(TEXT_DRIVEN, screen))
    frames = screen.getvalue().split("\r\x1b[K")
    assert frames[3] == "[ 3/11] Sampler  ############............ 15/30"
    assert frames[-1] == "[ 4/11] VAE Decode\n"


# --- Batch ----------------------------------------------------------------------------------------


def _images(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"image")
    return folder


def test_a_batch_pairs_every_content_with_every_style_and_refuses_clashing_names(tmp_path):
    styles = batch.image_files([_images(tmp_path / "styles", "b.jpg", "a.png", "notes.txt")], "style")
    contents = batch.image_files([_images(tmp_path / "contents", "x.webp")], "content")
    jobs = batch.plan(styles, contents, tmp_path / "out")
    assert [job.output.name for job in jobs] == ["x__a.png", "x__b.png"]
    assert [job.output.name for job in batch.plan(styles, [], tmp_path / "out")] == ["a.png", "b.png"]
    clash = batch.image_files([tmp_path / "styles" / "a.png", _images(tmp_path / "more", "a.png")], "style")
    with pytest.raises(ComfyError, match="share a file name.*x__a.png"):
        batch.plan(clash, contents, tmp_path / "out")
    with pytest.raises(ComfyError, match="holds no image"):
        batch.image_files([_images(tmp_path / "empty")], "style")


def test_a_batch_spreads_over_servers_hands_jobs_of_a_dead_one_on_and_reports_failures(fake, tmp_path):
    bad_style = "s3.png"
    refuse = {
        "error": {"message": "Prompt outputs failed validation"},
        "node_errors": {"3": {"errors": [{"message": "Invalid image file", "details": "image: " + bad_style}]}},
    }

    def refuses_bad_style(prompt):
        return refuse if bad_style in prompt["3"]["inputs"]["image"] else None

    servers = [fake(refuse=refuses_bad_style, seconds=0.3), fake(refuse=refuses_bad_style, seconds=0.3)]
    dead = f"http://127.0.0.1:{free_port()}"
    styles = [tmp_path / f"s{i}.png" for i in range(4)]
    jobs = batch.plan(styles, [tmp_path / "c.png"], tmp_path / "out")

    def build(job, client):
        return workflow.configure(TEXT_DRIVEN, [("Style image", "image", job.style.name)], upload=None)

    said = []
    outcome = batch.run(jobs, [dead] + [s.url for s in servers], build, per_server=1, say=said.append)
    assert sorted(job.output.name for job in outcome.done) == ["c__s0.png", "c__s1.png", "c__s2.png"]
    ((failed, url, message),) = outcome.failed
    assert failed.style.name == bad_style and url in {s.url for s in servers}
    assert "node 3 'Style image' (LoadImage): Invalid image file: image: s3.png" in message
    assert any(text.startswith(f"{dead}: could not reach ComfyUI") for text in said)
    assert all(len(s.prompts) >= 1 for s in servers)
    for job in outcome.done:
        assert (tmp_path / "out" / job.output.name).read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "out").glob("*.partial"))


def test_jobs_no_server_could_take_are_reported_not_lost(tmp_path):
    jobs = batch.plan([tmp_path / "s.png"], [], tmp_path / "out")
    outcome = batch.run(jobs, [f"http://127.0.0.1:{free_port()}"], build_prompt=None, say=lambda text: None)
    ((job, url, message),) = outcome.failed
    assert url is None and message.startswith("not run: no server could take it (http://127.0.0.1:")


def test_save_images_writes_the_first_image_last(fake, tmp_path):
    server = fake()
    images = Comfy(server.url).run(workflow.load("stylealigned_batch_sd15"))
    images = images + [dict(images[0], filename="missing.png")]  # the server cannot give the first one
    with pytest.raises(Exception):
        batch.save_images(Comfy(server.url), images[::-1], tmp_path / "job.png")
    assert not (tmp_path / "job.png").exists()  # an interrupted job is not mistaken for a finished one


# --- The command line -----------------------------------------------------------------------------


def test_cli_run_downloads_into_the_folder_and_exits_0(fake, tmp_path, capsys):
    server = fake()
    code = main(
        [
            "run",
            "styleshot_text_driven",
            "--prompt",
            "a lake",
            "--seed",
            "5",
            "--set",
            "Sampler.steps=3",
            "-o",
            str(tmp_path / "out"),
            "--server",
            server.url,
        ]
    )
    assert code == 0
    (prompt,) = server.prompts
    assert prompt["6"]["inputs"]["text"] == "a lake" and prompt["9"]["inputs"]["seed"] == 5
    assert prompt["9"]["inputs"]["steps"] == 3
    assert capsys.readouterr().out.split() == [str(tmp_path / "out" / "styleshot_00001_.png")]


def test_cli_errors_exit_1_with_one_sentence(fake, tmp_path, capsys):
    server = fake(
        fail=lambda prompt: {
            "node_id": "9",
            "node_type": "KSampler",
            "exception_type": "RuntimeError",
            "exception_message": "boom",
        }
    )
    assert main(["stylize", "--style", str(_images(tmp_path, "s.png") / "s.png"), "--server", server.url]) == 1
    assert capsys.readouterr().err.strip().endswith("error: node 9 'Sampler' (KSampler) failed: RuntimeError: boom")
    assert main(["stylize", "--style", str(tmp_path / "none.png"), "--server", server.url]) == 1
    assert "style image" in capsys.readouterr().err and len(server.prompts) == 1


def test_cancel_takes_the_prompt_off_the_queue_and_interrupts_it(fake):
    server = fake()
    Comfy(server.url).cancel("some-id")
    assert server.deleted == ["some-id"] and server.interrupted == ["some-id"]


# --- Model files the workflow names ----------------------------------------------------------------

TEXT_DRIVEN_FILES = ["v1-5-pruned-emaonly-fp16.safetensors", "style_aware_encoder.bin", "styleshot_contour_ip.bin"]


def object_info(checkpoints=(), styleshot=()):
    """/object_info answers for the text-driven workflow's model loaders (combo inputs, both formats)."""
    return {
        "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [list(checkpoints), {}]}}},
        "StyleSuiteStyleShotLoader": {
            "input": {
                "required": {
                    "style_encoder": [list(styleshot), {"tooltip": "..."}],
                    "adapter": ["COMBO", {"options": list(styleshot)}],
                }
            }
        },
    }


def test_a_missing_model_file_is_named_with_the_command_that_fetches_it_before_anything_is_posted(
    fake, tmp_path, capsys
):
    server = fake(object_info=object_info(["mine.safetensors"], ["style_aware_encoder.bin"]))
    style = str(_images(tmp_path, "s.png") / "s.png")
    assert main(["stylize", "--style", style, "--server", server.url]) == 1
    err = capsys.readouterr().err
    assert f"the ComfyUI at {server.url} lacks model files this workflow needs:" in err
    assert (
        "- v1-5-pruned-emaonly-fp16.safetensors (node 1 'Load Checkpoint' (CheckpointLoaderSimple)): Stable "
        "Diffusion 1.5, the checkpoint"
    ) in err and "it goes in models/checkpoints" in err
    assert "- styleshot_contour_ip.bin (node 2 'StyleShot Loader'" in err
    assert "- style_aware_encoder.bin" not in err  # the server has that one
    assert (
        "python scripts/style_suite.py models --download v1-5-pruned-emaonly-fp16.safetensors styleshot_contour_ip.bin"
    ) in err and "Run this command again with --download" in err
    assert server.prompts == [] and server.uploads == {}  # nothing posted, nothing uploaded

    # a file the pack does not list: where it goes is the server's business
    other_checkpoint = ["--set", "Load Checkpoint.ckpt_name=other.ckpt"]
    assert main(["stylize", "--style", style, "--server", server.url, *other_checkpoint]) == 1
    assert (
        "- other.ckpt (node 1 'Load Checkpoint' (CheckpointLoaderSimple), input 'ckpt_name'): put it in the model "
        "folder that input lists, or choose a file it has with --set 'Load Checkpoint.ckpt_name=FILE'"
    ) in capsys.readouterr().err
    everything = fake(object_info=object_info(["v1-5-pruned-emaonly-fp16.safetensors"], TEXT_DRIVEN_FILES[1:]))
    assert main(["stylize", "--style", style, "--server", everything.url, "-o", str(tmp_path / "out.png")]) == 0
    # a file the pack does not list, on a pack node, is left to that node's own validation on the server
    adapter = ["--set", "StyleShot Loader.adapter=ip.bin", "-o", str(tmp_path / "other.png")]
    assert main(["stylize", "--style", style, "--server", everything.url, *adapter]) == 0
    assert len(everything.prompts) == 2


SHIM = """import dataclasses, json, os, sys
sys.path.insert(0, {scripts!r})
from pack import import_pack
import_pack()
from style_suite.loaders import model_status
published = json.loads(os.environ["TEST_PUBLISHED"])
model_status.ALL = tuple(
    dataclasses.replace(m, **published[m.name]) if m.name in published else m for m in model_status.ALL
)
from style_suite.headless.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture
def comfyui_python(tmp_path, monkeypatch):
    """Stands in for ComfyUI's Python: runs the pack's script with the published sizes and hashes set to
    the fixture files' (TEST_PUBLISHED), as the stand-in hub serves those instead of the real files."""
    from style_suite.headless.needed_files import SCRIPT

    shim = tmp_path / "shim.py"
    shim.write_text(SHIM.format(scripts=str(SCRIPT.parent)))
    python = tmp_path / "comfyui-python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {shim} "$@"\n')
    python.chmod(0o755)
    return python


def fixture_files():
    """Bytes of a small SD1.x checkpoint, a StyleShot encoder and a contour adapter (real layouts)."""
    from safetensors.torch import save

    from fixtures import styleshot
    from fixtures.sd15_checkpoint import header_checkpoint

    files = {TEXT_DRIVEN_FILES[0]: save(header_checkpoint())}
    for name, layout in (
        (TEXT_DRIVEN_FILES[1], styleshot.encoder_layout()),
        (TEXT_DRIVEN_FILES[2], styleshot.ip_bin_layout()),
    ):
        buffer = io.BytesIO()
        torch.save(styleshot.layout_only(layout, torch.float16), buffer)
        files[name] = buffer.getvalue()
    return files


def test_download_fetches_the_files_the_workflow_names_then_runs(fake, tmp_path, capsys, monkeypatch, comfyui_python):
    from style_suite.loaders.model_files import BY_NAME

    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    files = fixture_files()
    with Hub() as hub:
        for name, data in files.items():
            hub.serve(BY_NAME[name], data)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("COMFYUI_PATH", str(comfyui))
        monkeypatch.setenv(
            "TEST_PUBLISHED",
            json.dumps({name: {"size_bytes": len(data), "sha256": ""} for name, data in files.items()}),
        )
        server = fake(object_info=object_info(TEXT_DRIVEN_FILES[:1], TEXT_DRIVEN_FILES[1:]))
        style = str(_images(tmp_path, "s.png") / "s.png")

        def stylize_with_download(output):
            options = ["--download", "--comfyui-python", str(comfyui_python), "-o", str(output)]
            return main(["stylize", "--style", style, "--server", server.url, *options])

        code = stylize_with_download(tmp_path / "out.png")
        err = capsys.readouterr().err
        assert code == 0, err
    assert (comfyui / "models" / "checkpoints" / TEXT_DRIVEN_FILES[0]).read_bytes() == files[TEXT_DRIVEN_FILES[0]]
    assert (comfyui / "models" / "styleshot" / TEXT_DRIVEN_FILES[2]).read_bytes() == files[TEXT_DRIVEN_FILES[2]]
    assert "styleshot_contour_ip.bin: downloading" in err and len(server.prompts) == 1
    assert {urlparse(path).path.rsplit("/", 1)[-1] for path, _ in hub.requests} == {
        "v1-5-pruned-emaonly-fp16.safetensors",
        "style_aware_encoder.bin",
        "ip.bin",
    }  # nothing else

    # Run again: everything is there, nothing is downloaded
    hub_requests = len(hub.requests)
    assert stylize_with_download(tmp_path / "again.png") == 0
    assert len(hub.requests) == hub_requests and "already there, not downloaded" in capsys.readouterr().err


def test_download_needs_to_know_the_comfyui_folder(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    server = fake()
    style = str(_images(tmp_path, "s.png") / "s.png")
    assert main(["stylize", "--style", style, "--server", server.url, "--download"]) == 1
    err = capsys.readouterr().err
    assert "--download fetches model files into the model folders of a ComfyUI folder: set COMFYUI_PATH" in err
    assert "python scripts/style_suite.py models --download v1-5-pruned-emaonly-fp16.safetensors" in err
    assert server.prompts == []


def test_the_readmes_comfyui_args_line_reaches_comfyui_as_written(tmp_path, capsys, monkeypatch):
    """The README's own command, split as a shell splits it: '--cpu' reaches main.py as an argument
    (argparse used to refuse it: 'expected one argument'). The ComfyUI here only logs its arguments."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if '--comfyui-args "--cpu"' in line and "style_suite.py" in line]
    argv = shlex.split(line)
    argv = argv[argv.index("scripts/style_suite.py") + 1 :]
    comfyui = tmp_path / "ComfyUI"
    comfyui.mkdir()
    (comfyui / "main.py").write_text("import sys\nprint('arguments:', sys.argv[1:])\nsys.exit(3)\n")
    monkeypatch.setenv("COMFYUI_PATH", str(comfyui))
    monkeypatch.chdir(tmp_path)
    for value in argv:
        if value.endswith((".jpg", ".png")):
            _images(tmp_path, value)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "exited with code 3 while starting" in err and "'--disable-auto-launch', '--cpu']" in err


def test_the_comfyui_it_starts_gives_freed_weights_back_unless_the_user_chose(tmp_path, monkeypatch):
    """glibc's mmap threshold is fixed for the server it starts (README, "Memory"); a value the
    user set is kept."""
    from style_suite.headless.local import LocalComfyUI

    comfyui = tmp_path / "ComfyUI"
    comfyui.mkdir()
    (comfyui / "main.py").write_text(
        "import os, sys\nprint('threshold:', os.environ.get('MALLOC_MMAP_THRESHOLD_'))\nsys.exit(3)\n"
    )
    for chosen, expected in ((None, "131072"), ("65536", "65536")):
        if chosen is None:
            monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
        else:
            monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", chosen)
        with pytest.raises(ComfyError, match=f"threshold: {expected}\n"):
            LocalComfyUI(comfyui, timeout=30)
