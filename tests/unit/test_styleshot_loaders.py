"""Loading StyleShot's `style_aware_encoder.bin` and `ip.bin` (docs/design/styleshot.md 1.6, 2): the
published layouts load (the `unet.` copy skipped, content fusion optional), anything else is refused
with a sentence naming the file, the first mismatch and what the file looks like, and ip.bin's UNet
copy is never read into memory (files that try to run code: test_hostile_files.py; empty, cut and
other slots' files, mixed dtypes: test_broken_files.py)."""

import gc
import os

import pytest
import torch

from fixtures import styleshot
from fixtures.memory import reset_peak, status_mib
from fixtures.styleshot import layout_only
from style_suite.loaders.sd15_controlnet import controlnet_layout
from style_suite.loaders.styleshot import load_adapter, load_encoder
from style_suite.loaders.weights import ModelFileError


@pytest.fixture(scope="module")
def cf_layout():
    return styleshot.content_fusion_layout()


@pytest.fixture(scope="module")
def stage1_file(tmp_path_factory):
    """The stage-1 ip.bin: no content-fusion encoder."""
    return str(styleshot.write_adapter(tmp_path_factory.mktemp("stage1") / "ip.bin", seed=5))


def save(tmp_path, name, state_dict):
    path = str(tmp_path / name)
    torch.save(state_dict, path)
    return path


def refused(loader, path):
    with pytest.raises(ModelFileError) as error:
        loader(path)
    return str(error.value)


# ---------------------------------------------------------------- the published layouts load


def test_diffusers_controlnet_layout_is_the_packs(cf_layout):
    assert len(cf_layout) == 340
    assert controlnet_layout() == cf_layout


def test_stage1_adapter_loads_without_its_unet_copy(stage1_file):
    stored = torch.load(stage1_file, weights_only=True)
    assert any(k.startswith("unet.") for k in stored)  # the fixture carries the UNet sample
    adapter = load_adapter(stage1_file)
    state = adapter.state_dict()
    assert set(state) == set(styleshot.adapter_layout())  # no unet.*, nothing else
    for key, value in state.items():
        assert value.dtype == torch.float32 and torch.equal(value, stored[key]), key
    assert adapter.content_fusion is None
    assert not adapter.training and not any(p.requires_grad for p in adapter.parameters())


def test_contour_adapter_keeps_its_content_fusion_encoder(contour_file, cf_layout):
    stored = torch.load(contour_file, weights_only=True, mmap=True)
    adapter = load_adapter(contour_file)
    assert set(adapter.state_dict()) == set(styleshot.adapter_layout())
    content = adapter.content_fusion
    assert isinstance(content, dict) and len(content) == 340
    assert {k: tuple(v.shape) for k, v in content.items()} == cf_layout  # prefix stripped, diffusers names
    for key, value in content.items():
        assert torch.equal(value, stored[f"controlnet.{key}"]), key
    torch.testing.assert_close(
        adapter.adapter_modules["31"].to_v_ip.weight, stored["adapter_modules.31.to_v_ip.weight"], rtol=0, atol=0
    )


def test_encoder_file_variants_load(tmp_path):
    """With CLIP's position ids (files saved by transformers < 4.31) and without the three unused
    CLIP embeddings (the converter's output), the encoder still loads, each tensor in its place."""
    layout = styleshot.encoder_layout()
    with_ids = layout_only(layout)
    with_ids["image_encoder.vision_model.embeddings.position_ids"] = torch.arange(257)[None]
    slim = {k: v for k, v in layout_only(layout).items() if ".embeddings." not in k}
    assert len(slim) == 605
    keys = list(layout)
    for name, state_dict in (("with_ids.bin", with_ids), ("slim.bin", slim)):
        encoder = load_encoder(save(tmp_path, name, state_dict))
        params = encoder.state_dict()
        for key in ("position_embedding.weight", "cnn.2.adapter.bias", "image_encoder.visual_projection.weight"):
            assert (params[key] == keys.index(key)).all(), (name, key)
        del encoder, params


# ---------------------------------------------------------------- anything else is refused


def test_missing_unexpected_and_wrong_shape_adapter_keys_are_named(tmp_path):
    sd = styleshot.adapter_state_dict(content_fusion=False)
    missing = dict(sd)
    del missing["adapter_modules.31.to_v_ip.weight"]
    message = refused(load_adapter, save(tmp_path, "missing_ip.bin", missing))
    assert message.startswith("missing_ip.bin is not a StyleShot adapter")
    assert "1 missing keys (first: adapter_modules.31.to_v_ip.weight)" in message

    extra = {**sd, "adapter_modules.33.to_k_ip.weight": torch.zeros(320, 768)}
    message = refused(load_adapter, save(tmp_path, "extra_ip.bin", extra))
    assert "extra_ip.bin" in message and "1 unexpected keys (first: adapter_modules.33.to_k_ip.weight)" in message

    sd2 = {**sd, "style_image_proj_modules.0.proj.weight": torch.zeros(2048, 1024)}  # an SD2.x build
    message = refused(load_adapter, save(tmp_path, "sd2_ip.bin", sd2))
    assert "sd2_ip.bin" in message
    assert "style_image_proj_modules.0.proj.weight is (2048, 1024), expected (1536, 1024)" in message


def test_content_fusion_part_is_checked_too(tmp_path, cf_layout):
    content = layout_only({f"controlnet.{k}": v for k, v in cf_layout.items()})
    del content["controlnet.controlnet_mid_block.weight"]
    path = save(tmp_path, "ip.bin", {**styleshot.adapter_state_dict(content_fusion=False), **content})
    message = refused(load_adapter, path)
    assert "ip.bin is not a StyleShot content-fusion encoder" in message
    assert "missing keys (first: controlnet_mid_block.weight)" in message


def test_encoder_mismatches_are_named(tmp_path):
    layout = styleshot.encoder_layout()
    missing = layout_only(layout)
    del missing["cnn.1.body.3.in_conv.bias"]
    message = refused(load_encoder, save(tmp_path, "enc_missing.bin", missing))
    assert message.startswith("enc_missing.bin is not a StyleShot style-aware encoder")
    assert "1 missing keys (first: cnn.1.body.3.in_conv.bias)" in message

    extra = {**layout_only(layout), "cnn.0.body.5.skep.weight": torch.zeros(1280, 1280, 1, 1)}
    message = refused(load_encoder, save(tmp_path, "enc_extra.bin", extra))
    assert "enc_extra.bin" in message and "1 unexpected keys (first: cnn.0.body.5.skep.weight)" in message

    wrong = {**layout_only(layout), "position_embedding.weight": torch.zeros(77, 1280)}
    message = refused(load_encoder, save(tmp_path, "enc_wrong.bin", wrong))
    assert "enc_wrong.bin" in message
    assert "position_embedding.weight is (77, 1280), expected (59, 1280)" in message


# ---------------------------------------------------------------- memory


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_the_unet_copy_is_never_read(tmp_path):
    unet_mib = 400
    sd = styleshot.adapter_state_dict(content_fusion=False)
    sd["unet.mid_block.big"] = torch.ones(unet_mib * 2**20 // 4)  # 400 MiB of fp32
    path = save(tmp_path, "ip.bin", sd)
    del sd
    assert os.path.getsize(path) > unet_mib * 2**20
    gc.collect()  # what earlier tests freed must not count as growth
    before = status_mib("VmRSS")
    peak_tracked = reset_peak()
    adapter = load_adapter(path)
    grown = (status_mib("VmHWM") if peak_tracked else status_mib("VmRSS")) - before
    assert "unet.mid_block.big" not in adapter.state_dict()
    # The adapter is ~25 MiB of fp32, read and then copied; with glibc's mmap threshold fixed (as the
    # test command runs pytest) every copy is counted afresh instead of reusing freed heap, so the
    # growth is up to about 200 MiB. Reading the UNet tensor would add 400 MiB more.
    assert grown < 300, f"loading grew memory by {grown:.0f} MiB"
