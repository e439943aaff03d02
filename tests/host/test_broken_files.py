"""Model files of the wrong kind or broken, chosen through a real ComfyUI server as a headless user posts
them: for every loader slot the shipped workflow, with the slot set to its own file cut at half its
bytes or to another slot's file, fails at that loader node with the pack's sentence naming the file,
and nothing after the loader ran: no sampler started. (Every slot x every container, non-model files
and mixed dtypes: tests/unit/test_broken_files.py. The stage-1 ip.bin: tests/host/test_server.py.)"""

import json
import os
import shutil

import pytest

from fixtures import inst
from fixtures.shipped_workflows import API_DIR, STEPPED, at_test_scale, load, node_id

CUT = (
    "{} could not be read as a weights file: it is cut short (the end of its zip archive is missing). "
    "The download or copy did not finish: download it again."
)
INST_FILE = (
    "{} is an InST style file (it pickles InST's network), not weights for this input: "
    "choose it in InST Style Token (models/inst)."
)
TEXTUAL_INVERSION = (
    "{} is a textual-inversion embedding (string_to_param), not weights for this input: "
    "choose it in InST Style Token (models/inst)."
)
NOT_A_STYLE_FILE = "{} is not an InST or textual-inversion file: it looks like "

# slot: (folder, the file cut in half, workflow, node title, input,
#        another slot's file (its folder, name), how the message for it starts and ends)
SLOTS = {
    "HED": (
        "annotators",
        "ControlNetHED.pth",
        "contour_preview",
        "Contour",
        "hed_model",
        ("inst", "embeddings.pt"),
        (INST_FILE, INST_FILE),
    ),
    "lineart": (
        "annotators",
        "sk_model.pth",
        "lineart_preview",
        "Lineart",
        "lineart_model",
        ("inst", "learned_embeds.pt"),
        (TEXTUAL_INVERSION, TEXTUAL_INVERSION),
    ),
    "StyleShot encoder": (
        "styleshot",
        "style_aware_encoder.bin",
        "styleshot_text_driven",
        "StyleShot Loader",
        "style_encoder",
        ("styleshot", "styleshot_stage1_ip.bin"),
        (
            "{} is not a StyleShot style-aware encoder (style_aware_encoder.bin: ",
            " It looks like a StyleShot adapter (ip.bin): choose it as the StyleShot adapter. "
            "Choose the right file for this input.",
        ),
    ),
    "StyleShot adapter": (
        "styleshot",
        "styleshot_stage1_ip.bin",
        "styleshot_text_driven",
        "StyleShot Loader",
        "adapter",
        ("styleshot", "style_aware_encoder.bin"),
        (
            "{} is not a StyleShot adapter (ip.bin: ",
            " It looks like the StyleShot style-aware encoder (style_aware_encoder.bin): choose it "
            "as the style encoder. Choose the right file for this input.",
        ),
    ),
    "InST": (
        "inst",
        "embeddings.pt",
        "inst_style_transfer",
        "InST Style Token",
        "style_file",
        ("annotators", "ControlNetHED.pth"),
        (
            NOT_A_STYLE_FILE,
            "the HED network (ControlNetHED.pth, 37 tensors: norm, block1-5). Choose the right file for this input.",
        ),
    ),
    "textual inversion": (
        "inst",
        "learned_embeds.pt",
        "inst_style_transfer",
        "InST Style Token",
        "style_file",
        ("annotators", "sk_model.pth"),
        (
            NOT_A_STYLE_FILE,
            "the lineart generator (sk_model.pth or sk_model2.pth, 24 tensors: "
            "model0-model4). Choose the right file for this input.",
        ),
    ),
}


def cut_name(slot):
    return f"cut_{SLOTS[slot][1]}"


def write_half(source, target, chunk=64 << 20):
    """The first half of `source`'s bytes, as a download that stopped halfway leaves it."""
    half = os.path.getsize(source) // 2
    with open(source, "rb") as whole, open(target, "wb") as cut:
        while cut.tell() < half:
            cut.write(whole.read(min(chunk, half - cut.tell())))


@pytest.fixture(scope="module")
def broken_files(model_root):
    """In the server's model folders (removed after this module): a textual-inversion file, each slot's
    file cut in half, and each other slot's file in the slot's folder (where the slot's input lists it)."""
    written = [model_root / "inst" / "learned_embeds.pt"]
    inst.write_a1111(written[0], inst.vectors(1))
    for slot, (folder, name, *_, (other_folder, other_name), _) in SLOTS.items():
        written.append(model_root / folder / cut_name(slot))
        write_half(model_root / folder / name, written[-1])
        if other_folder != folder:
            written.append(model_root / folder / other_name)
            shutil.copyfile(model_root / other_folder / other_name, written[-1])
    yield
    for path in written:
        path.unlink()


def downstream(prompt, node_id):
    """The nodes that take an output of `node_id`, directly or through others."""
    found = set()
    while True:
        more = {
            key
            for key, node in prompt.items()
            if key not in found
            and any(isinstance(value, list) and value[0] in found | {node_id} for value in node["inputs"].values())
        }
        if not more:
            return found
        found |= more


def fails_at_its_loader(server, slot, file_name):
    """Run the slot's workflow with `file_name` in the slot; it must fail at the loader node, with
    nothing after it run (no sampler started). Returns the node's message."""
    _, _, workflow, title, input_name, *_ = SLOTS[slot]
    prompt = at_test_scale(load(API_DIR / f"{workflow}.json"))
    loader = node_id(prompt, title)
    prompt[loader]["inputs"][input_name] = file_name
    with pytest.raises(AssertionError) as failure:
        server.run(prompt)
    report = str(failure.value)
    assert report.startswith("the prompt failed: "), report  # ran, not refused by validation
    error = next(
        data for event, data in json.loads(report.removeprefix("the prompt failed: ")) if event == "execution_error"
    )
    assert (error["node_id"], error["node_type"]) == (loader, prompt[loader]["class_type"])
    after = downstream(prompt, loader)
    assert {key for key, node in prompt.items() if node["class_type"] in STEPPED} <= after
    assert not after & set(error["executed"]), "a node after the loader ran"
    return error["exception_message"].strip()


@pytest.mark.parametrize("slot", SLOTS)
def test_its_own_file_cut_in_half_fails_at_the_loader_before_sampling(server, broken_files, slot):
    assert fails_at_its_loader(server, slot, cut_name(slot)) == CUT.format(cut_name(slot))


@pytest.mark.parametrize("slot", SLOTS)
def test_another_slots_file_fails_at_the_loader_saying_what_it_is(server, broken_files, slot):
    *_, (_, other), (starts, ends) = SLOTS[slot]
    message = fails_at_its_loader(server, slot, other)
    assert message.startswith(starts.format(other)) and message.endswith(ends.format(other)), message
