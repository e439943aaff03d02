"""StyleShot Apply Content inside a real ComfyUI (in this process, CPU), on a full-size SD1.5 UNet and
the full-size content-fusion encoder of the contour ip.bin look-alike, random weights: parity with
diffusers (UNet2DConditionModel with IP-Adapter processors + ControlNetModel fed the style tokens, in
the published order), the context per batch chunk, chaining with a stock ControlNet and a
T2I-Adapter that keep the text, the hint, refusal, and sampling at cfg 4 and 1."""

import importlib

import pytest
import torch

from fixtures import sampling, sd15_unet
from fixtures.styleshot_nodes import (
    LATENT,
    Spy,
    T,
    apply,
    apply_content,
    binary_map,
    diffusers_control_image,
    forward,
    load,
    tensors,
)

MAP = 64  # content-map side: latent 8 x 8


# --- helpers -------------------------------------------------------------------------------------


def conditioning(seed):
    return [[tensors(seed, 1, 77, 768), {}]]


def control_of(cond):
    return cond[0][1]["control"]


def run_control(control, model, x, context, cond_or_uncond, t=T):
    """What ComfyUI's calc_cond_batch does with a cond's control for one model call: pre_run, then
    get_control on the noisy latent at sigma(t) (which it scales back as apply_model does)."""
    sampling = model.get_model_object("model_sampling")
    control.pre_run(model.model, lambda percent: sampling.percent_to_sigma(percent))
    sigma = sampling.sigma(torch.full((x.shape[0],), float(t)))
    noisy = x * (sigma**2 + 1).sqrt()[:, None, None, None]
    try:
        with torch.no_grad():
            return control.get_control(
                noisy, sigma, {"c_crossattn": context}, len(cond_or_uncond), {"cond_or_uncond": list(cond_or_uncond)}
            )
    finally:
        control.cleanup()


def residual_sum(*controls):
    """Element-wise sum of ControlNet outputs ({'input'|'middle'|'output': [tensor or None]})."""
    out = {}
    for key in ("input", "middle", "output"):
        lists = [c.get(key, []) for c in controls]
        length = max(map(len, lists))
        out[key] = []
        for i in range(length):
            values = [items[i] for items in lists if i < len(items) and items[i] is not None]
            out[key].append(sum(values[1:], values[0]) if values else None)
    return out


def assert_same_control(result, expected):
    for key in ("input", "middle", "output"):
        assert len(result[key]) == len(expected[key]), key
        for a, b in zip(result[key], expected[key]):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def content_weights(model_root):
    """The controlnet.* part of the fixture ip.bin, read with torch.load (not the pack's loader)."""
    state = torch.load(
        model_root / "styleshot" / "styleshot_contour_ip.bin", map_location="cpu", mmap=True, weights_only=True
    )
    return {k[len("controlnet.") :]: v for k, v in state.items() if k.startswith("controlnet.")}


@pytest.fixture(scope="module")
def diffusers_controlnet(content_weights):
    from diffusers import ControlNetModel

    net = ControlNetModel(cross_attention_dim=768)  # SD1.5's config, as ControlNetModel.from_unet gives
    net.load_state_dict(content_weights, strict=True)
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def stock_controlnet(content_weights):
    """A stock ComfyUI ControlNet with the same weights: what a user's other ControlNet would be."""
    import comfy.controlnet

    return comfy.controlnet.load_controlnet_state_dict(dict(content_weights))


@pytest.fixture(scope="module")
def t2i_adapter():
    """A stock ComfyUI T2I-Adapter (SD1.5 full adapter shape, random weights) through its own loader."""
    import comfy.controlnet
    import comfy.t2i_adapter.adapter

    adapter = comfy.t2i_adapter.adapter.Adapter(
        cin=3 * 64, channels=[320, 640, 1280, 1280], nums_rb=2, ksize=1, sk=True, use_conv=False
    )
    return comfy.controlnet.load_t2i_adapter(sd15_unet.randomize(adapter, 4).state_dict())


@pytest.fixture(scope="module")
def content_map():
    return binary_map(1)


@pytest.fixture(scope="module")
def conds():
    return conditioning(11), conditioning(12)


@pytest.fixture(scope="module")
def content(pack, styleshot, style, conds, content_map):
    """(positive, negative) from Apply Content at strength 1."""
    return apply_content(pack, *conds, styleshot, style, content_map)


@pytest.fixture(scope="module")
def patched(pack, sd15, styleshot, style):
    return apply(pack, sd15, styleshot, style)


@pytest.fixture(scope="module")
def encoder_spy(pack, styleshot):
    spy = Spy(styleshot.adapter_file.content.control_model)
    yield spy
    spy.close()


# --- 1. parity with diffusers --------------------------------------------------------------------


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_one_model_call_matches_diffusers_controlnet_fed_the_style_tokens(
    pack, sd15, patched, ip_unet, diffusers_controlnet, styleshot, style, conds, content_map, batch, strength
):
    x, context = batch  # rows: uncond, cond
    positive, negative = apply_content(pack, *conds, styleshot, style, content_map, strength=strength)
    control = control_of(positive)
    assert control is control_of(negative)  # one copy serves both, so the two conds batch together

    tokens = torch.cat([style.uncond, style.cond])
    hint = content_map.movedim(-1, 1).repeat(2, 1, 1, 1)  # the same map for both halves, in [0, 1]
    timesteps = torch.full((2,), T)
    with torch.no_grad():
        down, middle = diffusers_controlnet(
            x,
            timesteps,
            encoder_hidden_states=tokens,
            controlnet_cond=hint,
            conditioning_scale=strength,
            return_dict=False,
        )
        expected = ip_unet(
            x,
            timesteps,
            encoder_hidden_states=context,
            added_cond_kwargs={"image_embeds": [tokens]},
            down_block_additional_residuals=down,
            mid_block_additional_residual=middle,
        ).sample
    result = forward(patched, x, context, [1, 0], control=run_control(control, sd15, x, context, [1, 0]))

    effect = (result - forward(patched, x, context, [1, 0])).abs().max().item()
    assert effect > 1e-2, "the content encoder must change the output for the comparison to mean anything"
    torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-4)
    assert (result - expected).abs().max().item() < effect / 1000


# --- 2. what the encoder sees --------------------------------------------------------------------


@pytest.mark.parametrize("cond_or_uncond", [[1, 0], [0, 1], [0], [1], [0, 0, 1]])
def test_the_encoder_sees_the_style_tokens_of_each_chunk_and_never_the_text(
    sd15, style, content, content_map, encoder_spy, cond_or_uncond
):
    rows = 2
    x = tensors(20, rows * len(cond_or_uncond), *LATENT)
    text = tensors(21, x.shape[0], 77, 768)
    encoder_spy.calls.clear()
    run_control(control_of(content[0]), sd15, x, text, cond_or_uncond)
    (call,) = encoder_spy.calls
    expected = torch.cat([(style.uncond if kind == 1 else style.cond).expand(rows, 6, 768) for kind in cond_or_uncond])
    assert torch.equal(call["context"], expected)
    assert torch.equal(call["hint"], content_map.movedim(-1, 1))  # as is; one row broadcast to every chunk


def test_a_stock_controlnet_before_or_after_it_keeps_the_text_context(
    comfy, pack, sd15, styleshot, style, conds, content_map, stock_controlnet, encoder_spy
):
    apply_stock = comfy[0].ControlNetApplyAdvanced().apply_controlnet
    depth = binary_map(2)
    x, text = tensors(22, 2, *LATENT), tensors(23, 2, 77, 768)
    stock_spy = Spy(stock_controlnet.control_model)
    try:
        alone_stock = run_control(
            control_of(apply_stock(*conds, stock_controlnet, depth, 0.8, 0.0, 1.0)[0]), sd15, x, text, [1, 0]
        )
        alone_ours = run_control(
            control_of(apply_content(pack, *conds, styleshot, style, content_map)[0]), sd15, x, text, [1, 0]
        )
        before = apply_content(
            pack, *apply_stock(*conds, stock_controlnet, depth, 0.8, 0.0, 1.0), styleshot, style, content_map
        )
        after = apply_stock(
            *apply_content(pack, *conds, styleshot, style, content_map), stock_controlnet, depth, 0.8, 0.0, 1.0
        )
        for positive, _ in (before, after):
            stock_spy.calls.clear()
            encoder_spy.calls.clear()
            chained = run_control(control_of(positive), sd15, x, text, [1, 0])
            assert torch.equal(stock_spy.calls[0]["context"], text)
            assert torch.equal(encoder_spy.calls[0]["context"], torch.cat([style.uncond, style.cond]))
            assert_same_control(chained, residual_sum(alone_stock, alone_ours))
    finally:
        stock_spy.close()
    # The input conditioning still has no control attached.
    assert all("control" not in entry[1] for cond in conds for entry in cond)


def test_it_stacks_with_a_t2i_adapter(
    comfy, pack, sd15, styleshot, style, conds, content_map, t2i_adapter, encoder_spy
):
    apply_stock = comfy[0].ControlNetApplyAdvanced().apply_controlnet
    x, text = tensors(24, 2, *LATENT), tensors(25, 2, 77, 768)
    adapter_only = run_control(
        control_of(apply_stock(*conds, t2i_adapter, binary_map(3), 1.0, 0.0, 1.0)[0]), sd15, x, text, [1, 0]
    )
    ours_only = run_control(
        control_of(apply_content(pack, *conds, styleshot, style, content_map)[0]), sd15, x, text, [1, 0]
    )
    stacked = apply_content(
        pack, *apply_stock(*conds, t2i_adapter, binary_map(3), 1.0, 0.0, 1.0), styleshot, style, content_map
    )
    encoder_spy.calls.clear()
    both = run_control(control_of(stacked[0]), sd15, x, text, [1, 0])
    assert torch.equal(encoder_spy.calls[0]["context"], torch.cat([style.uncond, style.cond]))
    assert_same_control(both, residual_sum(adapter_only, ours_only))


# --- 3. the hint ---------------------------------------------------------------------------------


def soft_map(seed, height, width):
    """A lineart-like map: grey levels k/255, the same on the three channels."""
    levels = torch.randint(0, 256, (1, height, width, 1), generator=torch.Generator().manual_seed(seed))
    return (levels.float() / 255).expand(-1, -1, -1, 3).contiguous()


def hint_seen(sd15, positive, latent_size, encoder_spy):
    encoder_spy.calls.clear()
    run_control(control_of(positive), sd15, tensors(26, 2, 4, *latent_size), tensors(27, 2, 77, 768), [1, 0])
    return encoder_spy.calls[0]["hint"]


@pytest.mark.parametrize("height,width", [(64, 64), (77, 53), (101, 90), (61, 140)])
@pytest.mark.parametrize("make_map", [binary_map, soft_map])
def test_by_default_the_map_is_fitted_as_styleshot_prepares_it(
    pack, sd15, styleshot, style, conds, encoder_spy, height, width, make_map
):
    """With the latent sized from the map (Get Image Size -> Empty Latent Image: sides rounded down to
    a multiple of 8), the encoder sees exactly what StyleShot's pipeline feeds its ControlNet: the
    whole map resized with Lanczos to that size, no crop."""
    content_map = make_map(7, height=height, width=width)
    positive, _ = apply_content(pack, *conds, styleshot, style, content_map)
    hint = hint_seen(sd15, positive, (height // 8, width // 8), encoder_spy)
    assert torch.equal(hint, diffusers_control_image(content_map))


def test_a_latent_of_another_size_gets_the_whole_map_as_styleshot_resizes_to_a_given_size(
    pack, sd15, styleshot, style, conds, encoder_spy, caplog
):
    wide = soft_map(5, height=80, width=120)
    positive, _ = apply_content(pack, *conds, styleshot, style, wide)
    with caplog.at_level("WARNING"):
        hint = hint_seen(sd15, positive, LATENT[1:], encoder_spy)
    assert torch.equal(hint, diffusers_control_image(wide, height=MAP, width=MAP))
    assert "the content map is 120x80 but the latent is 64x64: the map is resized to it whole" in caplog.text


def test_centre_crop_fits_the_map_as_comfyui_controlnets_do(pack, sd15, styleshot, style, conds, encoder_spy, caplog):
    """The other fit: the centre 80x80 of a 120x80 map, nearest-exact, so binary contours stay binary."""
    wide = binary_map(5, height=80, width=120)
    positive, _ = apply_content(pack, *conds, styleshot, style, wide, map_fit="centre crop, nearest (ComfyUI)")
    with caplog.at_level("WARNING"):
        hint = hint_seen(sd15, positive, LATENT[1:], encoder_spy)
    centre = wide[:, :, 20:100].movedim(-1, 1)
    assert torch.equal(hint, torch.nn.functional.interpolate(centre, size=(MAP, MAP), mode="nearest-exact"))
    assert set(hint.unique().tolist()) == {0.0, 1.0}
    assert "the content map is 120x80 but the latent is 64x64: the map is cropped to the centre" in caplog.text
    stretched = hint_seen(sd15, apply_content(pack, *conds, styleshot, style, wide)[0], LATENT[1:], encoder_spy)
    assert not torch.equal(stretched, hint)


def test_an_unknown_map_fit_is_refused(pack, styleshot, style, conds, content_map):
    with pytest.raises(ValueError, match="unknown map_fit 'bicubic': choose one of stretch, Lanczos"):
        apply_content(pack, *conds, styleshot, style, content_map, map_fit="bicubic")


def test_grey_rgba_and_nan_maps_become_rgb_in_0_1(pack, sd15, styleshot, style, conds, content_map, encoder_spy):
    grey = content_map[..., :1].clone()
    grey[0, 0, 0, 0] = float("nan")
    rgba = torch.cat([content_map, torch.ones(1, MAP, MAP, 1)], dim=-1)
    expected = content_map.movedim(-1, 1).clone()
    expected[0, :, 0, 0] = 0.0  # NaN -> black
    for image, reference in ((grey, expected), (rgba, content_map.movedim(-1, 1))):
        positive, _ = apply_content(pack, *conds, styleshot, style, image)
        encoder_spy.calls.clear()
        run_control(control_of(positive), sd15, tensors(28, 1, *LATENT), tensors(29, 1, 77, 768), [0])
        assert torch.equal(encoder_spy.calls[0]["hint"], reference)


# --- 4. strength, range, inputs untouched, caching -----------------------------------------------


def test_strength_zero_returns_the_conditioning_unchanged(pack, styleshot, style, conds, content_map):
    positive, negative = apply_content(pack, *conds, styleshot, style, content_map, strength=0.0)
    assert positive is conds[0] and negative is conds[1]


def test_outside_its_percent_range_the_encoder_does_not_run(
    pack, sd15, styleshot, style, conds, content_map, encoder_spy
):
    positive, _ = apply_content(pack, *conds, styleshot, style, content_map, start=0.9, end=1.0)
    encoder_spy.calls.clear()
    assert run_control(control_of(positive), sd15, tensors(30, 2, *LATENT), tensors(31, 2, 77, 768), [1, 0]) is None
    assert encoder_spy.calls == []
    with pytest.raises(ValueError, match=r"start_percent \(0.6\) is after end_percent \(0.4\)"):
        apply_content(pack, *conds, styleshot, style, content_map, start=0.6, end=0.4)


def test_the_encoder_is_built_once_and_loaded_with_the_unet(pack, styleshot, content):
    encoder = styleshot.adapter_file.content
    assert load(pack).adapter_file.content is encoder
    assert styleshot.adapter.model.content_fusion is None  # the weights are held once, by the ControlNet
    control = control_of(content[0])
    assert control.control_model is encoder.control_model  # copies share the weights
    assert control.get_models() == [encoder.control_model_wrapped]
    assert control.copy().style is control.style and type(control.copy()) is type(control)


def test_the_converted_fp16_file_gives_the_same_encoder(pack, styleshot, model_root):
    convert = importlib.import_module(pack.__name__ + ".loaders.convert")  # the converter script's module
    folder = model_root / "styleshot"
    assert convert.main([str(folder / "styleshot_contour_ip.bin"), "--fp16", "--out-dir", str(folder)]) == 0
    converted = load(pack, "styleshot_contour_ip.safetensors")
    original, slim = styleshot.adapter_file.content.control_model, converted.adapter_file.content.control_model
    assert slim is not original
    expected = {k: v.half().to(v.dtype) for k, v in original.state_dict().items()}
    for key, value in slim.state_dict().items():
        assert torch.equal(value.to(expected[key].dtype), expected[key]), key
    (folder / "styleshot_contour_ip.safetensors").unlink()


# --- 5. refusal ----------------------------------------------------------------------------------


def test_an_adapter_without_content_fusion_is_refused_naming_the_releases(pack, style, conds, content_map):
    stage1 = load(pack, "styleshot_stage1_ip.bin")
    with pytest.raises(ValueError) as refusal:
        apply_content(pack, *conds, stage1, style, content_map)
    message = str(refusal.value)
    assert "'styleshot_stage1_ip.bin' has none" in message
    assert "https://huggingface.co/Gaojunyao/StyleShot/resolve/main/pretrained_weight/ip.bin" in message
    assert "https://huggingface.co/Gaojunyao/StyleShot_lineart/resolve/main/pretrained_weight/ip.bin" in message


def test_batches_that_do_not_fit_are_refused(pack, sd15, styleshot, style, conds):
    three = binary_map(6, batch=3)
    positive, _ = apply_content(pack, *conds, styleshot, style, three)
    with pytest.raises(
        ValueError, match="3 content maps for a latent batch of 2: give 1 content map, or one per latent"
    ):
        run_control(control_of(positive), sd15, tensors(32, 4, *LATENT), tensors(33, 4, 77, 768), [1, 0])
    pair = pack.models.style_adapter.StyleTokens(cond=style.cond.repeat(2, 1, 1), uncond=style.uncond)
    with pytest.raises(ValueError, match="3 content maps and 2 styles"):
        apply_content(pack, *conds, styleshot, pair, three)


# --- 6. sampling ---------------------------------------------------------------------------------


def ksample(comfy, model, positive, negative, cfg):
    return sampling.ksample(comfy, model, positive, negative, {"samples": torch.zeros(1, *LATENT)}, cfg)


@pytest.mark.parametrize("cfg", [4.0, 1.0])
def test_sampling_with_style_and_content(comfy, patched, conds, content, encoder_spy, cfg):
    encoder_spy.calls.clear()
    with_content = ksample(comfy, patched, *content, cfg)
    assert with_content.shape == (1, *LATENT) and torch.isfinite(with_content).all()
    assert not torch.allclose(with_content, ksample(comfy, patched, *conds, cfg), atol=1e-3)
    assert len(encoder_spy.calls) == 2  # one call per step: cond and uncond batched, or cond alone at cfg 1
    assert encoder_spy.calls[0]["context"].shape[0] == (2 if cfg > 1 else 1)
