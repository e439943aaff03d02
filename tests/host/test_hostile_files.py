"""Model files that try to run code, chosen through a real ComfyUI server as a headless user posts
them: for every loader slot the shipped workflow, with the slot set to a file whose pickle would run
a shell command, fails at that node with the pack's refusal naming the file, and the command never
ran in the server. (The full matrix of containers and lying headers: tests/unit/test_hostile_files.py.)"""

import pytest

from fixtures.payload import Command, save_payload
from fixtures.shipped_workflows import API_DIR, at_test_scale, load, titled

# slot: (folder, file name, how it is stored, its content given the payload, workflow, node title, input)
SLOTS = {
    "HED": (
        "annotators",
        "payload_hed.pth",
        "torch zip",
        lambda p: {"norm": p},
        "contour_preview",
        "Contour",
        "hed_model",
    ),
    "lineart": (
        "annotators",
        "payload_lineart.pth",
        "torch legacy",
        lambda p: {"model0.1.weight": p},
        "lineart_preview",
        "Lineart",
        "lineart_model",
    ),
    "StyleShot encoder": (
        "styleshot",
        "payload_encoder.bin",
        "pickle protocol 2",
        lambda p: {"cnn.0.conv_in.weight": p},
        "styleshot_text_driven",
        "StyleShot Loader",
        "style_encoder",
    ),
    "StyleShot adapter": (
        "styleshot",
        "payload_ip.bin",
        "torch zip",
        lambda p: {"adapter_modules.1.to_k_ip.weight": p},
        "styleshot_text_driven",
        "StyleShot Loader",
        "adapter",
    ),
    "InST": (
        "inst",
        "payload_embeddings.pt",
        "torch zip",
        lambda p: {"string_to_token": {"*": 265}, "attention": p},
        "inst_style_transfer",
        "InST Style Token",
        "style_file",
    ),
    "textual inversion": (
        "inst",
        "payload_learned_embeds.pt",
        "torch legacy",
        lambda p: {"string_to_param": {"*": p}},
        "inst_style_transfer",
        "InST Style Token",
        "style_file",
    ),
}


@pytest.fixture(scope="module")
def payloads(model_root, tmp_path_factory):
    """The payload files in the server's model folders (removed after this module), and the marker
    file each would create if its pickle ran."""
    marker = tmp_path_factory.mktemp("payload") / "the command ran"
    written = []
    for folder, name, container, content, *_ in SLOTS.values():
        path = model_root / folder / name
        save_payload(path, container, content(Command(marker)))
        written.append(path)
    yield marker
    for path in written:
        path.unlink()


@pytest.mark.parametrize("slot", SLOTS)
def test_a_file_that_would_run_a_command_fails_its_node_and_never_runs(server, payloads, slot):
    _, name, _, _, workflow, title, input_name = SLOTS[slot]
    prompt = at_test_scale(load(API_DIR / f"{workflow}.json"))
    titled(prompt, title)["inputs"][input_name] = name
    with pytest.raises(AssertionError) as failure:
        server.run(prompt)
    message = str(failure.value)
    assert (
        f"{name} was refused: it asks for posix.system, which a weights file never needs; nothing from it was run"
        in message
    )
    assert f'"node_type": "{titled(prompt, title)["class_type"]}"' in message  # failed at the loader, before sampling
    assert not payloads.exists()
