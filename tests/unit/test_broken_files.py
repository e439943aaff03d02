"""Model files of the wrong kind or broken: for every loader slot an empty file, the slot's own file
cut at half its bytes (in each container the slot is read from), each other slot's file and files that
are no model file at all are refused with a sentence naming the file and what is wrong; a file whose
tensors mix fp16, bf16 and fp32 loads as its fp32 version does, within each dtype's rounding. (The
stage-1 ip.bin loads: test_styleshot_loaders.py; image-driven use of it is refused naming the releases:
tests/host/test_server.py. Through a real ComfyUI server: tests/host/test_broken_files.py.)"""

import io
import os
import random

import pytest
import torch
from PIL import Image

from fixtures import annotators, images, inst
from fixtures import styleshot as styleshot_files
from fixtures.styleshot import layout_only
from style_suite.loaders.annotators import load_hed, load_lineart
from style_suite.loaders.inst import load_style_file
from style_suite.loaders.styleshot import load_adapter, load_encoder
from style_suite.loaders.weights import ModelFileError, write_safetensors

CONTAINERS = ("torch zip", "torch legacy", "safetensors")
MIXED = (torch.float16, torch.bfloat16, torch.float32)


def state_dict_writer(tensors):
    """Writes `tensors()` in a container: safetensors one tensor at a time (the encoder's is 1.3 GB),
    torch zip as published, or torch's legacy format (torch < 1.6)."""

    def write(path, container):
        if container == "safetensors":
            write_safetensors(path, tensors())
        else:
            torch.save(tensors(), path, _use_new_zipfile_serialization=container == "torch zip")

    return write


def write_inst(path, container):
    inst.write_inst(path, legacy=container == "torch legacy")


def write_textual_inversion(path, container):
    if container == "safetensors":  # diffusers' learned_embeds.safetensors
        inst.write_learned_embeds(path, inst.vectors(1))
        return
    inst.write_a1111(path, inst.vectors(1))
    if container == "torch legacy":
        torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=False)


# slot: (loader, published file name, writer(path, container), the containers it is read from)
SLOTS = {
    "HED": (load_hed, "ControlNetHED.pth", state_dict_writer(annotators.hed_state_dict), CONTAINERS),
    "lineart": (load_lineart, "sk_model.pth", state_dict_writer(annotators.lineart_state_dict), CONTAINERS),
    "StyleShot encoder": (
        load_encoder,
        "style_aware_encoder.bin",  # real shapes, one number stored per tensor
        state_dict_writer(lambda: layout_only(styleshot_files.encoder_layout(), torch.float16)),
        CONTAINERS,
    ),
    "StyleShot adapter": (
        load_adapter,
        "styleshot_contour_ip.bin",
        state_dict_writer(lambda: styleshot_files.adapter_state_dict(content_fusion=False, unet=False)),
        CONTAINERS,
    ),
    "InST": (load_style_file, "embeddings.pt", write_inst, ("torch zip", "torch legacy")),  # a pickled network
    "textual inversion": (load_style_file, "learned_embeds.pt", write_textual_inversion, CONTAINERS),
}
SAME_INPUT = {"InST": "textual inversion", "textual inversion": "InST"}  # both go in InST Style Token

# What a slot's loader calls the network it expects, and what the message says a slot's file is.
KINDS = {
    "HED": "HED network (ControlNetHED.pth, 37 tensors: norm, block1-5)",
    "lineart": "lineart generator (sk_model.pth or sk_model2.pth, 24 tensors: model0-model4)",
    "StyleShot encoder": "StyleShot style-aware encoder (style_aware_encoder.bin: image_encoder.*, cnn.*, 608 tensors)",
    "StyleShot adapter": "StyleShot adapter (ip.bin: adapter_modules.*, style_image_proj_modules.*)",
}
LOOKS_LIKE = {
    "HED": "the HED network (ControlNetHED.pth, 37 tensors: norm, block1-5)",
    "lineart": "the lineart generator (sk_model.pth or sk_model2.pth, 24 tensors: model0-model4)",
    "StyleShot encoder": "the StyleShot style-aware encoder (style_aware_encoder.bin): choose it as the style encoder",
    "StyleShot adapter": "a StyleShot adapter (ip.bin): choose it as the StyleShot adapter",
}
STYLE_FILE_IN_A_WEIGHTS_SLOT = {
    "InST": "{} is an InST style file (it pickles InST's network), not weights for this input: "
    "choose it in InST Style Token (models/inst).",
    "textual inversion": "{} is a textual-inversion embedding (string_to_param), not weights for this input: "
    "choose it in InST Style Token (models/inst).",
}
CUT = (
    "{} could not be read as a weights file: it is cut short ({}). "
    "The download or copy did not finish: download it again."
)


def file_name(slot, container):
    name = SLOTS[slot][1]
    return f"{os.path.splitext(name)[0]}.safetensors" if container == "safetensors" else name


def refusal(slot, path):
    with pytest.raises(ModelFileError) as error:
        SLOTS[slot][0](str(path))
    return str(error.value)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Each slot's file as published (torch zip), under its published name, in a folder of its own."""
    files = {}
    for slot, (_, name, write, _) in SLOTS.items():
        files[slot] = tmp_path_factory.mktemp("published") / name
        write(files[slot], "torch zip")
    return files


SLOT_CONTAINERS = [(slot, container) for slot, (*_, containers) in SLOTS.items() for container in containers]


@pytest.mark.parametrize(("slot", "container"), SLOT_CONTAINERS)
def test_a_file_cut_at_half_its_bytes_is_refused_as_cut_short(tmp_path, slot, container):
    path = tmp_path / file_name(slot, container)
    SLOTS[slot][2](path, container)
    full_size = os.path.getsize(path)
    os.truncate(path, full_size // 2)
    how = {
        "torch zip": "the end of its zip archive is missing",
        "torch legacy": "its data stops in the middle",
        "safetensors": f"{full_size // 2:,} bytes where its header describes {full_size:,}",
    }[container]
    assert refusal(slot, path) == CUT.format(path.name, how)


@pytest.mark.parametrize(
    ("slot", "container"),
    [  # read by torch's weights-only loader, and by ours
        ("HED", "torch legacy"),
        ("textual inversion", "torch legacy"),
        ("textual inversion", "torch zip"),
        ("textual inversion", "safetensors"),
    ],
)
def test_every_cut_of_a_small_file_is_refused_as_cut_short_never_as_hostile(tmp_path, slot, container):
    """Cut at every length through its first 640 bytes (a legacy file's pickles, the safetensors header,
    the zip's first entry), then at every 37th: a legacy pickle cut inside a class name asks for half a
    name, which must not read as a file that asks for code."""
    whole = tmp_path / file_name("textual inversion", container)
    write_textual_inversion(whole, container)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{whole.suffix}"
    for size in [*range(9, 640), *range(640, len(data), 37)]:
        cut.write_bytes(data[:size])
        message = refusal(slot, cut)
        assert message.startswith(f"{cut.name} could not be read as a weights file: it is cut short ("), (size, message)


def test_an_empty_file_is_refused_in_every_slot(tmp_path):
    for slot in SLOTS:
        path = tmp_path / SLOTS[slot][1]
        path.write_bytes(b"")
        assert refusal(slot, path) == f"{path.name} is empty (0 bytes): the download did not finish; download it again"


OTHER_SLOT = [(slot, other) for slot in SLOTS for other in SLOTS if other not in (slot, SAME_INPUT.get(slot))]


@pytest.mark.parametrize(("slot", "other"), OTHER_SLOT)
def test_a_file_of_another_slot_is_refused_saying_what_it_is(published, slot, other):
    name = published[other].name
    message = refusal(slot, published[other])
    if other in STYLE_FILE_IN_A_WEIGHTS_SLOT:
        assert message == STYLE_FILE_IN_A_WEIGHTS_SLOT[other].format(name)
    elif slot in KINDS:
        assert message.startswith(f"{name} is not a {KINDS[slot]}: ")
        assert message.endswith(f" It looks like {LOOKS_LIKE[other]}. Choose the right file for this input.")
    else:  # the InST input
        assert message == (
            f"{name} is not an InST or textual-inversion file: it looks like {LOOKS_LIKE[other]}. "
            "Choose the right file for this input."
        )


def png_bytes():
    buffer = io.BytesIO()
    Image.fromarray(images.photo(32, 32)).save(buffer, format="PNG")
    return buffer.getvalue()


NOT_MODEL_FILES = {"random bytes": lambda: random.Random(0).randbytes(4096), "a PNG image": png_bytes}


@pytest.mark.parametrize("content", NOT_MODEL_FILES)
@pytest.mark.parametrize("slot", SLOTS)
def test_a_file_that_is_no_model_file_is_refused_as_neither_format(tmp_path, slot, content):
    data = NOT_MODEL_FILES[content]()
    for name in (file_name(slot, "torch zip"), file_name(slot, "safetensors")):  # read by torch, by safetensors
        path = tmp_path / name
        path.write_bytes(data)
        assert refusal(slot, path) == (
            f"{name} could not be read as a weights file: it is neither safetensors nor a PyTorch file (it begins "
            f"with the bytes {data[:8].hex(' ')}). Choose the file the README lists for this input, or download it "
            "again."
        )


@pytest.mark.parametrize(("written", "named"), [("safetensors", "torch zip"), ("torch zip", "safetensors")])
def test_a_file_under_the_other_formats_name_is_told_to_be_renamed(tmp_path, written, named):
    path = tmp_path / file_name("HED", named)
    SLOTS["HED"][2](path, written)
    stem, suffix = os.path.splitext(path.name)[0], ".safetensors" if written == "safetensors" else ".pth"
    actual, name = ("safetensors", "PyTorch") if written == "safetensors" else ("PyTorch", "safetensors")
    assert refusal("HED", path) == (
        f"{path.name} could not be read as a weights file: it is a {actual} file under a "
        f"{name} file's name. Rename it to {stem}{suffix}."
    )


# ---------------------------------------------------------------- fp16, bf16 and fp32 in one file


def mixed(tensors):
    """Each tensor in turn fp16, bf16 or fp32 (the published encoder mixes fp16 and fp32 already)."""
    return {key: value.to(MIXED[i % len(MIXED)]) for i, (key, value) in enumerate(tensors.items())}


def assert_cast_from(loaded: dict, stored: dict, fp32: dict):
    """Each loaded tensor is fp32, exactly its stored value cast up, and the fp32 value within the
    rounding of the dtype it was stored in (bf16 keeps 8 significant bits, fp16 11)."""
    assert set(loaded) == set(stored)
    for key, value in loaded.items():
        assert value.dtype == torch.float32 and torch.equal(value, stored[key].float()), key
        torch.testing.assert_close(value, fp32[key].float(), rtol=2**-8, atol=2**-24)  # fp16 subnormals: 2^-24 apart


@pytest.mark.parametrize("slot", ["HED", "lineart", "StyleShot adapter"])
def test_a_state_dict_that_mixes_dtypes_loads_as_its_fp32_file(tmp_path, slot):
    """The published files are fp16 (HED), fp32 (lineart, ip.bin) or both (the encoder: it loads in
    test_convert.py, and its 3 GB network goes through the same cast, weights.materialize)."""
    fp32 = {
        "HED": annotators.hed_state_dict,
        "lineart": annotators.lineart_state_dict,
        "StyleShot adapter": lambda: styleshot_files.adapter_state_dict(content_fusion=False, unet=False),
    }[slot]()
    fp32 = {key: value.float() for key, value in fp32.items()}
    stored = mixed(fp32)
    torch.save(stored, tmp_path / SLOTS[slot][1])
    assert {value.dtype for value in stored.values()} == set(MIXED)
    assert_cast_from(SLOTS[slot][0](str(tmp_path / SLOTS[slot][1])).state_dict(), stored, fp32)


def mixed_layout_only(layout):
    """layout_only with the dtypes mixed: a broadcast scalar per key (its index) in fp16, bf16 or fp32."""
    return {
        key: torch.full((), float(i), dtype=MIXED[i % len(MIXED)]).expand(shape)
        for i, (key, shape) in enumerate(layout.items())
    }


def test_the_content_fusion_encoder_keeps_its_stored_dtypes_for_comfyui_to_cast(tmp_path):
    """ComfyUI's ControlNet loader casts it to the dtype it runs the ControlNet in, as with any file."""
    content = mixed_layout_only(styleshot_files.content_fusion_layout())
    style = mixed(styleshot_files.adapter_state_dict(content_fusion=False, unet=False))
    torch.save({**style, **{f"controlnet.{key}": value for key, value in content.items()}}, tmp_path / "ip.bin")
    adapter = load_adapter(str(tmp_path / "ip.bin"))
    assert_cast_from(adapter.state_dict(), style, style)
    assert set(adapter.content_fusion) == set(content)
    for key, value in adapter.content_fusion.items():
        assert value.dtype == content[key].dtype and torch.equal(value, content[key]), key


def test_an_inst_network_that_mixes_dtypes_loads_as_its_fp32_network(tmp_path):
    network = inst.inst_network(seed=3)
    fp32 = {key: value.clone() for key, value in network.state_dict().items()}
    for i, parameter in enumerate(network.parameters()):
        parameter.data = parameter.data.to(MIXED[i % len(MIXED)])
    stored = network.state_dict()
    with inst.ldm_classes():
        torch.save({"string_to_token": {"*": 265}, "attention": network}, tmp_path / "embeddings.pt")
    assert {value.dtype for value in stored.values()} == set(MIXED)
    assert_cast_from(load_style_file(str(tmp_path / "embeddings.pt")).network.state_dict(), stored, fp32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_textual_inversion_vector_of_half_precision_gives_fp32_vectors(tmp_path, dtype):
    vectors = inst.vectors(2)
    inst.write_a1111(tmp_path / "style.pt", vectors.to(dtype))
    loaded = load_style_file(str(tmp_path / "style.pt")).vectors
    assert_cast_from({"*": loaded}, {"*": vectors.to(dtype)}, {"*": vectors})


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 2147483648 bytes."),
        MemoryError(),
    ],
    ids=["gpu", "cpu allocator", "python"],
)
def test_running_out_of_memory_while_reading_is_not_called_a_broken_file(tmp_path, monkeypatch, error):
    """ComfyUI reports an OutOfMemoryError itself (with its tips) and unloads its models; called a
    broken file, it would send the user to download a good file again."""
    path = tmp_path / "sk_model.pth"
    torch.save(annotators.lineart_state_dict(), path)

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(type(error)) as raised:
        load_lineart(str(path))
    assert raised.value is error
