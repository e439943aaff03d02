"""Model files that try to run code, or that lie: for every loader slot a pickle that would run a
shell command is refused, naming the file, and the command never runs; safetensors headers that lie
are refused without reading or allocating what they claim; files that are not model files at all (a
saved web page, a Git LFS pointer) say so. The same refusals through a real ComfyUI server:
tests/host/test_hostile_files.py."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fixtures import annotators
from fixtures import styleshot as styleshot_files
from fixtures.memory import in_a_fresh_process
from fixtures.payload import Command, save_payload
from style_suite.loaders.annotators import load_hed, load_lineart
from style_suite.loaders.inst import load_style_file
from style_suite.loaders.styleshot import load_adapter, load_encoder
from style_suite.loaders.weights import ModelFileError

# slot: (loader, file name, a key of the slot's real layout that the payload replaces)
SLOTS = {
    "HED": (load_hed, "ControlNetHED.pth", "norm"),
    "lineart": (load_lineart, "sk_model.pth", "model0.1.weight"),
    "StyleShot encoder": (load_encoder, "style_aware_encoder.bin", "cnn.0.conv_in.weight"),
    "StyleShot adapter": (load_adapter, "styleshot_contour_ip.bin", "adapter_modules.1.to_k_ip.weight"),
    "InST": (load_style_file, "embeddings.pt", "attention"),
    "textual inversion": (load_style_file, "learned_embeds.pt", "string_to_param"),
}


def refusal(loader, path):
    with pytest.raises(ModelFileError) as error:
        loader(str(path))
    return str(error.value)


def test_the_payload_is_live_so_an_absent_marker_means_it_never_ran(tmp_path):
    marker = tmp_path / "the command ran"
    torch.save({"norm": Command(marker)}, tmp_path / "payload.pth")
    torch.load(tmp_path / "payload.pth", weights_only=False)  # what an unsafe loader would do
    assert marker.exists()


@pytest.mark.parametrize("container", ["torch zip", "torch legacy", "pickle protocol 2", "pickle protocol 4"])
@pytest.mark.parametrize("slot", SLOTS)
def test_a_pickle_that_would_run_a_command_is_refused_and_the_command_never_runs(tmp_path, slot, container):
    loader, name, key = SLOTS[slot]
    marker = tmp_path / "the command ran"
    path = tmp_path / name
    save_payload(path, container, {key: Command(marker)})
    message = refusal(loader, path)
    assert message.startswith(f"{name} was refused: ")
    assert "nothing from it was run" in message and "sources listed in the README" in message
    if container != "pickle protocol 4":  # torch's safe loader stops at protocol 4's framing, before any global
        assert "it asks for posix.system" in message or "it asks for nt.system" in message
    assert not marker.exists()


def safetensors_with_header(path, header: dict, data=b"\0" * 64, length=None):
    """A file in the safetensors layout (8-byte little-endian header length, JSON header, data)
    whose header says whatever the test wants."""
    encoded = json.dumps(header).encode()
    with open(path, "wb") as file:
        file.write((len(encoded) if length is None else length).to_bytes(8, "little"))
        file.write(encoded)
        file.write(data)
    return path


TERABYTE_TENSOR = {"norm": {"dtype": "F32", "shape": [2**19, 2**19], "data_offsets": [0, 2**40]}}
LYING_HEADERS = {
    "a header length of 2^62 bytes": dict(header={}, length=2**62),
    "a header length past the end of the file": dict(header={}, length=10**6),
    "a tensor of 1 TB in a 64-byte file": dict(header=TERABYTE_TENSOR),
    "offsets past the end": dict(header={"norm": {"dtype": "F32", "shape": [8, 8], "data_offsets": [0, 256]}}),
    "offsets that do not match the shape": dict(
        header={"norm": {"dtype": "F32", "shape": [2**20], "data_offsets": [0, 64]}}
    ),
    "a dtype that is no dtype": dict(header={"norm": {"dtype": "Q4_K", "shape": [16], "data_offsets": [0, 64]}}),
}


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures memory through Linux /proc")
def test_lying_safetensors_headers_are_refused_without_reading_or_allocating_what_they_claim(tmp_path):
    """Each file is a few bytes; the loader runs in a fresh process whose peak memory is reported, so
    a loader that allocated (or read) what a header claims would show it."""
    files = {
        case: str(safetensors_with_header(tmp_path / f"{i}.safetensors", **spec))
        for i, (case, spec) in enumerate(LYING_HEADERS.items())
    }
    report = json.loads(
        in_a_fresh_process(f"""
import json
from style_suite.loaders.annotators import load_hed
from style_suite.loaders.weights import ModelFileError
before = grown_mib()  # after the imports
messages = {{}}
for case, path in {files!r}.items():
    try:
        load_hed(path)
        messages[case] = None
    except ModelFileError as error:
        messages[case] = str(error)
print(json.dumps({{"messages": messages, "grown_mib": grown_mib() - before}}))
""")
    )
    for case, message in report["messages"].items():
        name = Path(files[case]).name
        assert message is not None, f"{case}: accepted"
        assert message.startswith(f"{name} could not be read as a weights file") or message.startswith(
            f"{name} stores Q4_K tensors"
        ), f"{case}: {message}"
    assert report["grown_mib"] < 100, (
        f"loading grew memory by {report['grown_mib']:.0f} MiB: something read what a header claims"
    )


@pytest.mark.parametrize("slot", ["HED", "StyleShot adapter"])
def test_integer_tensors_under_the_right_names_are_refused(tmp_path, slot):
    loader, name, _ = SLOTS[slot]
    layout = annotators.hed_layout() if slot == "HED" else styleshot_files.adapter_layout()
    tensors = {key: torch.zeros(shape, dtype=torch.int64) for key, shape in layout.items()}
    path = tmp_path / name.replace(".pth", ".safetensors").replace(".bin", ".safetensors")
    save_file(tensors, path)
    message = refusal(loader, path)
    assert f"{path.name} stores int64 tensors where network weights are floating point" in message


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures memory through Linux /proc")
def test_a_large_file_of_another_kind_is_refused_without_reading_its_data(tmp_path):
    """A 1 GiB safetensors file of the wrong kind in the HED slot: memory-mapped, refused by its
    layout before its data is read, so loading adds almost nothing to memory (in a fresh process)."""
    path = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.big": torch.zeros(2**28)}, path)  # 1 GiB of fp32
    report = json.loads(
        in_a_fresh_process(f"""
import json
from style_suite.loaders.annotators import load_hed
from style_suite.loaders.weights import ModelFileError
before = grown_mib()  # after the imports
try:
    load_hed({str(path)!r})
    message = None
except ModelFileError as error:
    message = str(error)
print(json.dumps({{"message": message, "grown_mib": grown_mib() - before}}))
""")
    )
    assert report["message"].startswith("model.safetensors is not a HED network")
    assert report["grown_mib"] < 100, f"loading grew memory by {report['grown_mib']:.0f} MiB: the 1 GiB tensor was read"


NOT_MODEL_FILES = {
    "a saved web page": (b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>", "is a web page"),
    "a hub error": (b'{"error":"Repository not found"}', "is a web page or an error message"),
    "a Git LFS pointer": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 1807217753\n",
        "is a Git LFS pointer",
    ),
}


@pytest.mark.parametrize("content", NOT_MODEL_FILES, ids=str)
@pytest.mark.parametrize("slot", SLOTS)
def test_a_file_that_is_not_a_model_file_says_what_it_is(tmp_path, slot, content):
    loader, name, _ = SLOTS[slot]
    data, what = NOT_MODEL_FILES[content]
    path = tmp_path / name
    path.write_bytes(data)
    message = refusal(loader, path)
    assert message.startswith(f"{name} {what}")
    assert "download it again" in message or "download the file itself" in message
    assert "was refused" not in message  # not mistaken for a hostile file
