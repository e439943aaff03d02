"""Loading annotator files: the published formats load, anything else is refused with a sentence
that names the file and what is wrong (files that try to run code: test_hostile_files.py)."""

import os

import pytest
import torch
from fixtures import annotators
from safetensors.torch import save_file

from style_suite.loaders.annotators import load_hed, load_lineart
from style_suite.loaders.model_files import HED, missing_file_message
from style_suite.loaders.weights import ModelFileError, read_state_dict


@pytest.fixture(scope="module")
def hed_file(tmp_path_factory):
    return str(annotators.write_hed(tmp_path_factory.mktemp("a") / "ControlNetHED.pth"))


@pytest.fixture(scope="module")
def lineart_file(tmp_path_factory):
    return str(annotators.write_lineart(tmp_path_factory.mktemp("a") / "sk_model.pth"))


def test_fixture_files_have_the_published_keys_shapes_and_dtypes(hed_file, lineart_file):
    hed = torch.load(hed_file, weights_only=True)
    assert {k: tuple(v.shape) for k, v in hed.items()} == annotators.hed_layout()
    assert {v.dtype for v in hed.values()} == {torch.float16}
    lineart = torch.load(lineart_file, weights_only=True)
    assert {k: tuple(v.shape) for k, v in lineart.items()} == annotators.lineart_layout()
    assert {v.dtype for v in lineart.values()} == {torch.float32}


def test_fp16_hed_file_loads_into_fp32_weights(hed_file):
    net = load_hed(hed_file)
    stored = torch.load(hed_file, weights_only=True)
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    torch.testing.assert_close(net.block3.convs[1].weight, stored["block3.convs.1.weight"].float(), rtol=0, atol=0)
    torch.testing.assert_close(net.norm, stored["norm"].float(), rtol=0, atol=0)


def test_safetensors_form_loads_the_same(lineart_file, tmp_path):
    path = str(tmp_path / "sk_model.safetensors")
    save_file(torch.load(lineart_file, weights_only=True), path)
    a, b = load_lineart(lineart_file), load_lineart(path)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_lineart_file_in_the_hed_slot_names_both_layouts(lineart_file):
    with pytest.raises(ModelFileError) as error:
        load_hed(lineart_file)
    message = str(error.value)
    assert "sk_model.pth is not a HED network (ControlNetHED.pth" in message
    assert "looks like the lineart generator" in message
    assert "missing keys (first: norm" in message


def test_hed_file_in_the_lineart_slot_is_refused(hed_file):
    with pytest.raises(ModelFileError, match="is not a lineart generator.*looks like the HED network"):
        load_lineart(hed_file)


def test_wrong_shape_is_named(tmp_path):
    sd = annotators.lineart_state_dict()
    sd["model4.1.weight"] = torch.zeros(3, 64, 7, 7)
    path = str(tmp_path / "sk_model.pth")
    torch.save(sd, path)
    with pytest.raises(ModelFileError, match=r"model4.1.weight is \(3, 64, 7, 7\), expected \(1, 64, 7, 7\)"):
        load_lineart(path)


def test_empty_and_truncated_files_are_refused(hed_file, tmp_path):
    empty = tmp_path / "ControlNetHED.pth"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="ControlNetHED.pth is empty"):
        load_hed(str(empty))
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(open(hed_file, "rb").read()[: os.path.getsize(hed_file) // 2])
    with pytest.raises(ModelFileError, match="cut.pth could not be read.*download it again"):
        load_hed(str(truncated))


def test_a_file_that_is_not_a_dict_of_tensors_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ModelFileError, match="holds a list, not a flat dictionary of tensors"):
        read_state_dict(str(path))


def test_missing_file_message_says_what_where_and_how():
    message = missing_file_message(HED, "hed.pth", ["/comfy/models/annotators", "/data/annotators"])
    assert "'hed.pth' was not found in the 'annotators' model folder" in message
    assert "ControlNetHED.pth" in message and HED.url in message and "29.4 MB" in message
    assert "  - /comfy/models/annotators\n  - /data/annotators" in message
    assert "'annotators:' entry to extra_model_paths.yaml" in message
    assert "no file was chosen" in missing_file_message(HED, "", [])
