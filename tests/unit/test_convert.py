"""The safetensors writer and StyleShot's one-command converter (loaders/convert.py,
scripts/convert_styleshot.py): output files read back with safetensors' own loader, the UNet copy
and the unused CLIP embeddings are dropped, and the loaders accept what the converter writes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fixtures import annotators, styleshot
from style_suite.loaders import convert
from style_suite.loaders.styleshot import load_adapter, load_encoder
from style_suite.loaders.weights import write_safetensors

ROOT = Path(__file__).resolve().parents[2]
UNUSED = (
    "image_encoder.vision_model.embeddings.class_embedding",
    "image_encoder.vision_model.embeddings.patch_embedding.weight",
    "image_encoder.vision_model.embeddings.position_embedding.weight",
)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("converted")


# ---------------------------------------------------------------- write_safetensors


def sample_tensors():
    generator = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=generator),
        "f16": torch.randn(7, generator=generator).half(),
        "bf16": torch.randn(2, 3, 4, generator=generator).bfloat16(),
        "f64": torch.randn(4, generator=generator).double(),
        "i64": torch.arange(-3, 6),
        "i32": torch.tensor([[1, -2], [3, 2**30]], dtype=torch.int32),
        "u8": torch.tensor([0, 7, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4),
        "transposed": torch.arange(12.0).reshape(3, 4).t(),  # not contiguous
    }


def test_write_safetensors_round_trips_through_safetensors(tmp_path):
    tensors = sample_tensors()
    path = tmp_path / "x.safetensors"
    write_safetensors(str(path), tensors, metadata={"format": "pt", "n": 3})
    loaded = load_file(str(path))
    assert set(loaded) == set(tensors)
    for key, value in tensors.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        assert torch.equal(loaded[key], value), key
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "n": "3"}
    assert os.listdir(tmp_path) == ["x.safetensors"]  # no .partial left behind


def test_write_safetensors_casts_only_floating_tensors(tmp_path):
    tensors = sample_tensors()
    path = str(tmp_path / "half.safetensors")
    write_safetensors(path, tensors, dtype=torch.float16)
    loaded = load_file(path)
    for key, value in tensors.items():
        expected = value.half() if value.is_floating_point() else value
        assert loaded[key].dtype == expected.dtype and torch.equal(loaded[key], expected), key
    with safe_open(path, framework="pt") as f:
        assert f.metadata() is None


def test_write_safetensors_leaves_nothing_when_it_fails(tmp_path):
    path = tmp_path / "broken.safetensors"
    tensors = {"ok": torch.ones(4), "unwritable": torch.empty(4, device="meta")}  # has no data to write
    with pytest.raises(Exception):
        write_safetensors(str(path), tensors)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- the converter


def keys_of(path):
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys()), f.metadata()


def test_adapter_converts_beside_its_input(tmp_path):
    source = styleshot.write_adapter(tmp_path / "styleshot_stage1_ip.bin", seed=5)
    assert convert.main([str(source)]) == 0
    out = tmp_path / "styleshot_stage1_ip.safetensors"
    keys, metadata = keys_of(out)
    assert keys == set(styleshot.adapter_layout())  # no unet.*
    assert metadata["converted_from"] == "styleshot_stage1_ip.bin"
    a, b = load_adapter(str(source)), load_adapter(str(out))
    for (key, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), key
    assert b.content_fusion is None


def test_contour_adapter_keeps_content_fusion_and_drops_the_unet(contour_file, out_dir, capsys):
    assert convert.main([contour_file, "--out-dir", str(out_dir)]) == 0
    out = out_dir / "styleshot_contour_ip.safetensors"
    assert str(out) in capsys.readouterr().out
    keys, _ = keys_of(out)
    assert not any(k.startswith("unet.") for k in keys)
    assert sum(k.startswith("controlnet.") for k in keys) == 340
    assert len(keys) == 340 + len(styleshot.adapter_layout())
    original, converted = load_adapter(contour_file), load_adapter(str(out))
    for (key, x), (_, y) in zip(original.state_dict().items(), converted.state_dict().items()):
        assert torch.equal(x, y), key
    assert converted.content_fusion.keys() == original.content_fusion.keys()
    for key, value in original.content_fusion.items():
        assert torch.equal(converted.content_fusion[key], value), key
    assert not os.path.exists(os.path.join(os.path.dirname(contour_file), "styleshot_contour_ip.safetensors"))


def test_fp16_halves_the_floats(tmp_path):
    source = styleshot.write_adapter(tmp_path / "ip.bin", seed=6, unet=False)
    full, half = tmp_path / "full", tmp_path / "half"
    assert convert.main([str(source), "--out-dir", str(full)]) == 0
    assert convert.main([str(source), "--fp16", "--out-dir", str(half)]) == 0
    full_tensors, half_tensors = load_file(str(full / "ip.safetensors")), load_file(str(half / "ip.safetensors"))
    assert {t.dtype for t in full_tensors.values()} == {torch.float32}
    assert {t.dtype for t in half_tensors.values()} == {torch.float16}
    for key, value in full_tensors.items():
        assert torch.equal(half_tensors[key], value.half()), key
    ratio = os.path.getsize(half / "ip.safetensors") / os.path.getsize(full / "ip.safetensors")
    assert 0.49 < ratio < 0.51
    adapter = load_adapter(str(half / "ip.safetensors"))
    assert torch.equal(
        adapter.adapter_modules["5"].to_k_ip.weight, full_tensors["adapter_modules.5.to_k_ip.weight"].half().float()
    )


def test_encoder_converts_without_the_unused_clip_embeddings(encoder_file, out_dir):
    assert convert.main([encoder_file, "--out-dir", str(out_dir)]) == 0
    out = out_dir / "style_aware_encoder.safetensors"
    keys, metadata = keys_of(out)
    assert len(keys) == 605 and not keys & set(UNUSED)
    assert metadata["converted_from"] == "style_aware_encoder.bin"
    stored = torch.load(encoder_file, weights_only=True, mmap=True)
    with safe_open(str(out), framework="pt") as f:  # dtypes kept: fp16 CLIP, fp32 rest
        assert f.get_slice("image_encoder.visual_projection.weight").get_dtype() == "F16"
        assert f.get_slice("cnn.0.conv_in.weight").get_dtype() == "F32"
        assert torch.equal(f.get_tensor("position_embedding.weight"), stored["position_embedding.weight"])

    original, converted = load_encoder(encoder_file), load_encoder(str(out))
    for (key, x), (_, y) in zip(original.state_dict().items(), converted.state_dict().items()):
        assert torch.equal(x, y), key
    generator = torch.Generator().manual_seed(0)
    patches = [torch.rand(n, 3, s, s, generator=generator) * 2 - 1 for n, s in ((8, 128), (16, 64), (32, 32))]
    with torch.no_grad():
        torch.testing.assert_close(converted(*patches), original(*patches), rtol=0, atol=0)


def test_a_wrong_file_exits_1_with_a_message(tmp_path, capsys):
    hed = annotators.write_hed(tmp_path / "ControlNetHED.pth")
    assert convert.main([str(hed), "--out-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ControlNetHED.pth is not a StyleShot adapter")
    assert "looks like the HED network" in err
    assert not (tmp_path / "out" / "ControlNetHED.safetensors").exists()

    assert convert.main([str(tmp_path / "nowhere.bin")]) == 1
    assert "nowhere.bin" in capsys.readouterr().err


def test_the_script_converts_in_one_command(tmp_path):
    source = styleshot.write_adapter(tmp_path / "styleshot_lineart_ip.bin", seed=7)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_styleshot.py"), str(source), "--fp16"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "styleshot_lineart_ip.safetensors"
    assert f"-> {out}" in result.stdout
    tensors = load_file(str(out))
    assert set(tensors) == set(styleshot.adapter_layout())
    assert {t.dtype for t in tensors.values()} == {torch.float16}
