"""Loading annotator files: the published formats load, anything else is refused with a sentence
that names the file and what is wrong (files that try to run code: test_hostile_files.py; empty, cut
and other slots' files: test_broken_files.py)."""

import pytest
import torch
from safetensors.torch import save_file

from fixtures import annotators
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


def test_wrong_shape_is_named(tmp_path):
    sd = annotators.lineart_state_dict()
    sd["model4.1.weight"] = torch.zeros(3, 64, 7, 7)
    path = str(tmp_path / "sk_model.pth")
    torch.save(sd, path)
    with pytest.raises(ModelFileError, match=r"model4.1.weight is \(3, 64, 7, 7\), expected \(1, 64, 7, 7\)"):
        load_lineart(path)


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
