"""StyleShot through its real nodes inside a real ComfyUI (in this process, CPU), on a full-size SD1.5
UNet with random weights: parity with diffusers' IP-Adapter attention processors, batch routing,
chaining with other attn2 patches, clone semantics, refusal, sigma range, masks, Encode Style and a
short sampling run.

The UNet is built once per module as a diffusers UNet2DConditionModel and loaded into ComfyUI through
comfy.sd.load_diffusion_model_state_dict (ComfyUI converts the diffusers layout itself). Latents are
8x8, so one UNet call costs seconds on a CPU, not minutes.
"""

import pytest
import torch

from fixtures import sampling
from fixtures.styleshot_nodes import ALL, LATENT, T, apply, encode, forward, load, style_image, tensors

OUTPUT_ONLY = "output blocks only"
MIDDLE_ONLY = "middle only (test preset)"
# SD1.5's 16 cross-attention layers as ComfyUI names them (docs/design/comfyui.md 3.4), written out
# here rather than taken from the pack.
LAYER_KEYS = [("input", i) for i in (1, 2, 4, 5, 7, 8)] + [("middle", 0)] + [("output", i) for i in range(3, 12)]


# --- helpers -------------------------------------------------------------------------------------


def replacements(model):
    return model.model_options["transformer_options"].get("patches_replace", {}).get("attn2", {})


def replacement(model, key):
    """The attn2 replace ComfyUI runs for layer `key`: (block, id, 0) first, then (block, id)."""
    patches = replacements(model)
    return patches.get((*key, 0), patches.get(key))


def text_attention(q, k, v, extra):
    import comfy.ldm.modules.attention as attention

    return attention.optimized_attention(q, k, v, extra["n_heads"])


class Attn2Replace:
    """IPAdapter_plus's CrossAttentionPatch.Attn2Replace, reduced to what chaining relies on: text
    attention plus callbacks gated by sigma_start >= sigma >= sigma_end, extended by `.add()`."""

    def __init__(self, callback=None, **kwargs):
        self.callback = [callback]
        self.kwargs = [kwargs]

    def add(self, callback, **kwargs):
        self.callback.append(callback)
        self.kwargs.append(kwargs)

    def __call__(self, q, k, v, extra_options):
        dtype = q.dtype
        out = text_attention(q, k, v, extra_options)
        sigma = extra_options["sigmas"].detach().cpu()[0].item() if "sigmas" in extra_options else 999999999.9
        for callback, kwargs in zip(self.callback, self.kwargs):
            if kwargs["sigma_start"] >= sigma >= kwargs["sigma_end"]:
                out = out + callback(out, q, k, v, extra_options, **kwargs)
        return out.to(dtype=dtype)


ADAPTER_CALLS = []


def tanh_adapter(out, q, k, v, extra_options, weight, **kwargs):
    """Stands in for ipadapter_attention: any per-layer term will do."""
    ADAPTER_CALLS.append(extra_options["block"])
    return weight * torch.tanh(q)


def ipadapter_like(model, weight, sigma_start=999999999.9, sigma_end=0.0, three_part_keys=False):
    """What an IPAdapter_plus apply node does to a MODEL (IPAdapterPlus.py set_model_patch_replace)."""
    model = model.clone()
    for block in LAYER_KEYS:
        key = (*block, 0) if three_part_keys else block
        kwargs = {"weight": weight, "sigma_start": sigma_start, "sigma_end": sigma_end}
        to = model.model_options["transformer_options"].copy()
        to["patches_replace"] = dict(to.get("patches_replace", {}))
        to["patches_replace"]["attn2"] = dict(to["patches_replace"].get("attn2", {}))
        if key not in to["patches_replace"]["attn2"]:
            to["patches_replace"]["attn2"][key] = Attn2Replace(tanh_adapter, **kwargs)
            model.model_options["transformer_options"] = to
        else:
            to["patches_replace"]["attn2"][key].add(tanh_adapter, **kwargs)
    return model


def snapshot(value, patch_types):
    """Nested dicts/lists/tuples copied, patch objects opened up, everything else by identity."""
    if isinstance(value, dict):
        return {k: snapshot(v, patch_types) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [snapshot(v, patch_types) for v in value]
    if isinstance(value, patch_types):
        return ("patch", id(value), snapshot(vars(value), patch_types))
    return ("object", id(value))


class Sum:
    """A reference replace: `first + second - text attention`, i.e. both extra terms added."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, q, k, v, extra):
        return self.first(q, k, v, extra) + self.second(q, k, v, extra) - text_attention(q, k, v, extra)


def with_replacements(model, patches):
    model = model.clone()
    for key, patch in patches.items():
        model.set_model_patch_replace(patch, "attn2", *key)
    return model


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(pack, styleshot):
    """Two style images, not blended, unshuffled: cond [2, 6, 768]."""
    return encode(pack, styleshot, style_image(3, 4), shuffle=False)


@pytest.fixture(scope="module")
def patched(pack, sd15, styleshot, style):
    return apply(pack, sd15, styleshot, style)


@pytest.fixture(scope="module")
def styled(patched, batch):
    return forward(patched, *batch, [1, 0])


@pytest.fixture(scope="module")
def layer_inputs(sd15):
    """Real (q, k, v, extra_options) of each cross-attention layer from one UNet call with a latent
    batch of 2 in [uncond, cond] order (4 rows), for layer-level checks."""
    captured = {}

    def capture(key):
        def patch(q, k, v, extra):
            captured[key] = (q.clone(), k.clone(), v.clone(), dict(extra))
            return text_attention(q, k, v, extra)

        return patch

    spy = with_replacements(sd15, {key: capture(key) for key in LAYER_KEYS})
    forward(spy, tensors(3, 4, *LATENT), tensors(4, 4, 77, 768), [1, 0])
    assert set(captured) == set(LAYER_KEYS)
    return captured


def run_layer(model, key, inputs, **extra):
    q, k, v, options = inputs[key]
    with torch.no_grad():
        return replacement(model, key)(q, k, v, {**options, **extra})


# --- 1. parity with diffusers --------------------------------------------------------------------


def test_plain_unet_matches_diffusers(unets, batch, plain):
    """The layout conversion itself (no style): the ground the parity test stands on."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet = unets[0]
    assert unet.encoder_hid_proj is None, "runs before the ip_unet fixture installs the IP-Adapter processors"
    unet.set_attn_processor(AttnProcessor2_0())
    with torch.no_grad():
        expected = unet(batch[0], torch.full((2,), T), encoder_hidden_states=batch[1]).sample
    torch.testing.assert_close(plain, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("layers", "strength"), [(ALL, 1.0), (OUTPUT_ONLY, 1.0), (MIDDLE_ONLY, 0.7)])
def test_matches_diffusers_ip_adapter_processors(
    pack, sd15, ip_unet, styleshot, style, batch, plain, monkeypatch, layers, strength
):
    """The patched ComfyUI UNet equals diffusers' UNet with IPAdapterAttnProcessor2_0 on the same
    layers: proves the adapter index -> ComfyUI layer map (including ("middle", 0)) and the math."""
    presets = pack.nodes.styleshot.LAYER_PRESETS
    monkeypatch.setitem(presets, MIDDLE_ONLY, (31,))
    chosen = set(presets[layers])
    for index, processor in enumerate(ip_unet.attn_processors.values()):
        if index % 2:
            processor.scale = [strength if index in chosen else 0.0]

    x, context = batch
    model = apply(pack, sd15, styleshot, style, strength=strength, layers=layers)
    tokens = torch.cat([style.uncond, style.cond])  # rows: uncond, cond
    with torch.no_grad():
        expected = ip_unet(
            x, torch.full((2,), T), encoder_hidden_states=context, added_cond_kwargs={"image_embeds": [tokens]}
        ).sample
    result = forward(model, x, context, [1, 0])

    effect = (result - plain).abs().max().item()
    assert effect > 1e-2, "the style must change the output for the comparison to mean anything"
    torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-4)
    assert (result - expected).abs().max().item() < effect / 1000


# --- 2. strength 0, and the input MODEL untouched ------------------------------------------------


def test_strength_zero_is_the_unpatched_model_and_the_input_model_is_unchanged(
    pack, sd15, styleshot, style, batch, plain, styled
):
    before = snapshot(sd15.model_options, (pack.patches.styleshot.StyleLayer, Attn2Replace))
    zero = apply(pack, sd15, styleshot, style, strength=0.0)
    assert torch.equal(forward(zero, *batch, [1, 0]), plain)
    assert not torch.allclose(styled, plain, atol=1e-3)
    assert snapshot(sd15.model_options, (pack.patches.styleshot.StyleLayer, Attn2Replace)) == before
    assert "patches_replace" not in sd15.model_options["transformer_options"]
    assert zero is not sd15 and zero.model is sd15.model


# --- 3. routing ----------------------------------------------------------------------------------


def test_chunks_follow_cond_or_uncond(patched, batch, styled):
    x, context = batch
    swapped = forward(patched, x.flip(0), context.flip(0), [0, 1])
    torch.testing.assert_close(swapped, styled.flip(0), rtol=1e-5, atol=1e-5)
    uncond_only = forward(patched, x[:1], context[:1], [1])
    cond_only = forward(patched, x[1:], context[1:], [0])  # what cfg 1 runs
    torch.testing.assert_close(uncond_only[0], styled[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cond_only[0], styled[1], rtol=1e-5, atol=1e-5)
    # The uncond chunk gets the unconditional style tokens, not the style.
    assert not torch.allclose(forward(patched, x[:1], context[:1], [0]), uncond_only, atol=1e-3)


def test_several_cond_chunks(patched):
    x, context = tensors(5, 3, *LATENT), tensors(6, 3, 77, 768)
    result = forward(patched, x, context, [0, 0, 1])
    conds = forward(patched, x[:2], context[:2], [0])
    uncond = forward(patched, x[2:], context[2:], [1])
    torch.testing.assert_close(result, torch.cat([conds, uncond]), rtol=1e-5, atol=1e-5)


def test_one_style_per_latent(pack, sd15, styleshot, pair):
    StyleTokens = pack.models.style_adapter.StyleTokens
    x, context = tensors(7, 4, *LATENT), tensors(8, 4, 77, 768)  # [uncond 0, uncond 1, cond 0, cond 1]
    both = forward(apply(pack, sd15, styleshot, pair), x, context, [1, 0])
    for i in range(2):
        alone = apply(pack, sd15, styleshot, StyleTokens(cond=pair.cond[i : i + 1], uncond=pair.uncond))
        result = forward(alone, x, context, [1, 0])
        torch.testing.assert_close(both[2 + i], result[2 + i], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(both[:2], result[:2], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(both[2], both[3], atol=1e-3)


@pytest.mark.parametrize("latents", [1, 3])
def test_a_style_batch_that_fits_no_latent_batch_is_refused(pack, sd15, styleshot, pair, latents):
    model = apply(pack, sd15, styleshot, pair)
    x, context = tensors(9, 2 * latents, *LATENT), tensors(10, 2 * latents, 77, 768)
    with pytest.raises(
        ValueError,
        match=f"the style has 2 token sets but the latent batch has {latents} images: "
        r"encode 1 style image \(or turn on 'blend'\) or as many style images as latents",
    ):
        forward(model, x, context, [1, 0])


# --- 4. chaining ---------------------------------------------------------------------------------


@pytest.mark.parametrize("three_part_keys", [False, True])
def test_wraps_an_ipadapter_patch_already_on_the_layers(
    pack, sd15, styleshot, style, patched, batch, styled, layer_inputs, three_part_keys
):
    ip = ipadapter_like(sd15, weight=0.3, three_part_keys=three_part_keys)
    types = (pack.patches.styleshot.StyleLayer, Attn2Replace)
    before = snapshot(ip.model_options, types)
    both = apply(pack, ip, styleshot, style)
    assert snapshot(ip.model_options, types) == before
    assert len(replacements(both)) == 16

    for key in LAYER_KEYS:
        layer = replacement(both, key)
        assert isinstance(layer, pack.patches.styleshot.StyleLayer) and isinstance(layer.previous, Attn2Replace)
        q, k, v, extra = layer_inputs[key]
        expected = (
            run_layer(ip, key, layer_inputs) + run_layer(patched, key, layer_inputs) - text_attention(q, k, v, extra)
        )
        torch.testing.assert_close(run_layer(both, key, layer_inputs), expected, rtol=1e-5, atol=1e-5)

    ADAPTER_CALLS.clear()
    result = forward(both, *batch, [1, 0])
    assert sorted(ADAPTER_CALLS) == sorted(LAYER_KEYS)
    reference = with_replacements(
        sd15, {key: Sum(replacement(ip, key), replacement(patched, key)) for key in LAYER_KEYS}
    )
    torch.testing.assert_close(result, forward(reference, *batch, [1, 0]), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(result, styled, atol=1e-3)


def test_a_later_ipadapter_node_adds_onto_style_layers_without_touching_the_upstream_model(
    pack, patched, batch, styled, layer_inputs
):
    types = (pack.patches.styleshot.StyleLayer, Attn2Replace)
    before = snapshot(patched.model_options, types)
    later = ipadapter_like(patched, weight=0.3)
    assert snapshot(patched.model_options, types) == before
    for key in LAYER_KEYS:
        upstream, layer = replacement(patched, key), replacement(later, key)
        assert layer is not upstream and upstream.callbacks == [] and len(layer.callbacks) == 1
        assert layer.injection is upstream.injection
        q = layer_inputs[key][0]
        torch.testing.assert_close(
            run_layer(later, key, layer_inputs),
            run_layer(patched, key, layer_inputs) + 0.3 * torch.tanh(q),
            rtol=1e-5,
            atol=1e-5,
        )

    ADAPTER_CALLS.clear()
    assert not torch.allclose(forward(later, *batch, [1, 0]), styled, atol=1e-3)
    assert sorted(ADAPTER_CALLS) == sorted(LAYER_KEYS)

    # Gated by its own sigma range: outside it, the later adapter adds nothing.
    sigma = float(layer_inputs[LAYER_KEYS[0]][3]["sigmas"][0])
    gated = ipadapter_like(patched, weight=0.3, sigma_start=sigma / 2, sigma_end=0.0)
    for key in LAYER_KEYS:
        assert torch.equal(run_layer(gated, key, layer_inputs), run_layer(patched, key, layer_inputs))


def test_two_apply_style_nodes_add_both_style_terms(
    pack, sd15, styleshot, style, pair, patched, layer_inputs, batch, styled
):
    StyleTokens = pack.models.style_adapter.StyleTokens
    second_style = StyleTokens(cond=pair.cond[1:], uncond=pair.uncond)
    types = (pack.patches.styleshot.StyleLayer, Attn2Replace)
    before = snapshot(patched.model_options, types)
    chained = apply(pack, patched, styleshot, second_style, strength=0.5)
    assert snapshot(patched.model_options, types) == before
    second_alone = apply(pack, sd15, styleshot, second_style, strength=0.5)
    for key in LAYER_KEYS:
        q, k, v, extra = layer_inputs[key]
        expected = (
            run_layer(patched, key, layer_inputs)
            + run_layer(second_alone, key, layer_inputs)
            - text_attention(q, k, v, extra)
        )
        torch.testing.assert_close(run_layer(chained, key, layer_inputs), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(forward(chained, *batch, [1, 0]), styled, atol=1e-3)


# --- 5. cloning and model management -------------------------------------------------------------


def test_clones_share_weights_and_tokens_and_comfyui_loads_the_adapter(pack, patched, styleshot, style):
    import comfy.model_management as mm

    clone = patched.clone()
    for key in LAYER_KEYS:
        original, copied = replacement(patched, key), replacement(clone, key)
        assert copied is not original
        assert copied.injection.adapter_patcher is styleshot.adapter
        assert copied.injection.style.cond.data_ptr() == style.cond.data_ptr()
        assert copied.injection.style.uncond.data_ptr() == style.uncond.data_ptr()
        assert copied.models() == [styleshot.adapter]
    first = next(styleshot.adapter.model.parameters())
    assert next(replacement(clone, LAYER_KEYS[0]).injection.adapter_patcher.model.parameters()) is first
    assert set(map(id, clone.model_patches_models())) == {id(styleshot.adapter)}

    mm.load_models_gpu([clone])
    loaded = [m.model for m in mm.current_loaded_models]
    assert any(m is styleshot.adapter for m in loaded) and any(m is clone for m in loaded)
    clone.model_patches_to(torch.float32)
    clone.model_patches_to(torch.device("cpu"))
    assert all(isinstance(replacement(clone, key), pack.patches.styleshot.StyleLayer) for key in LAYER_KEYS)


# --- 6. refusal before sampling ------------------------------------------------------------------


def test_start_after_end_is_refused(pack, sd15, styleshot, style):
    with pytest.raises(ValueError, match=r"start_percent \(0.6\) is after end_percent \(0.4\)"):
        apply(pack, sd15, styleshot, style, start=0.6, end=0.4)


# --- 7. start / end percent ----------------------------------------------------------------------


def test_outside_the_percent_range_the_model_is_unchanged(pack, sd15, styleshot, style, batch, plain, layer_inputs):
    late = apply(pack, sd15, styleshot, style, start=0.9, end=0.9)
    assert torch.equal(forward(late, *batch, [1, 0]), plain)

    sampling = sd15.get_model_object("model_sampling")
    window = apply(pack, sd15, styleshot, style, start=0.3, end=0.6)
    high, low = sampling.percent_to_sigma(0.3), sampling.percent_to_sigma(0.6)
    key = LAYER_KEYS[0]
    q, k, v, extra = layer_inputs[key]
    text = text_attention(q, k, v, extra)
    for sigma, active in (
        (high, True),
        (low, True),
        ((high + low) / 2, True),
        (high * 1.01, False),
        (low * 0.99, False),
    ):
        out = run_layer(window, key, layer_inputs, sigmas=torch.full((4,), sigma))
        assert torch.equal(out, text) != active, sigma


# --- 8. attention mask ---------------------------------------------------------------------------


def test_attention_masks(pack, sd15, styleshot, style, batch, plain, styled):
    ones = apply(pack, sd15, styleshot, style, mask=torch.ones(1, 64, 64))
    torch.testing.assert_close(forward(ones, *batch, [1, 0]), styled, rtol=0, atol=1e-6)
    zeros = apply(pack, sd15, styleshot, style, mask=torch.zeros(64, 64))
    assert torch.equal(forward(zeros, *batch, [1, 0]), plain)
    three = apply(pack, sd15, styleshot, style, mask=torch.ones(3, 64, 64))
    with pytest.raises(
        ValueError,
        match="the attention mask has 3 masks but the latent batch has 1 images: use 1 mask or one per latent",
    ):
        forward(three, *batch, [1, 0])


def test_masks_apply_per_token_and_per_latent(pack, sd15, styleshot, style, patched, layer_inputs):
    half = torch.zeros(64, 64)
    half[:, :32] = 1  # left half of the image
    left = apply(pack, sd15, styleshot, style, mask=half)
    per_latent = apply(pack, sd15, styleshot, style, mask=torch.stack([torch.ones(64, 64), torch.zeros(64, 64)]))
    three = apply(pack, sd15, styleshot, style, mask=torch.ones(3, 64, 64))
    for key in LAYER_KEYS:
        q, k, v, extra = layer_inputs[key]
        text, full = text_attention(q, k, v, extra), run_layer(patched, key, layer_inputs)
        _, _, height, width = extra["activations_shape"]
        if width >= 2:  # the middle layer of an 8x8 latent is 1x1: no halves there
            masked = run_layer(left, key, layer_inputs).reshape(4, height, width, -1)
            torch.testing.assert_close(
                masked[:, :, : width // 2], full.reshape(4, height, width, -1)[:, :, : width // 2], rtol=0, atol=1e-6
            )
            torch.testing.assert_close(
                masked[:, :, width // 2 :], text.reshape(4, height, width, -1)[:, :, width // 2 :], rtol=0, atol=1e-6
            )
        # rows: uncond latent 0, uncond latent 1, cond latent 0, cond latent 1
        rows = run_layer(per_latent, key, layer_inputs)
        torch.testing.assert_close(rows[[0, 2]], full[[0, 2]], rtol=0, atol=1e-6)
        torch.testing.assert_close(rows[[1, 3]], text[[1, 3]], rtol=0, atol=1e-6)
        with pytest.raises(ValueError, match="3 masks but the latent batch has 2 images"):
            run_layer(three, key, layer_inputs)
    with pytest.raises(ValueError, match="attn_mask must be a MASK"):
        apply(pack, sd15, styleshot, style, mask=torch.ones(1, 1, 8, 8))


# --- 9. Encode Style and the loader ---------------------------------------------------------------


def test_loader_returns_the_cached_networks(pack, styleshot):
    again = load(pack)
    assert again.encoder is styleshot.encoder and again.adapter is styleshot.adapter


def test_encode_style_shapes_seeds_and_uncond(pack, styleshot, style, pair):
    import torch.nn.functional as F

    assert tuple(style.cond.shape) == (1, 6, 768) and tuple(style.uncond.shape) == (1, 6, 768)
    assert tuple(pair.cond.shape) == (2, 6, 768) and style.cond.dtype == torch.float32
    assert torch.equal(encode(pack, styleshot, style_image(3)).cond, style.cond)  # same seed
    assert not torch.allclose(encode(pack, styleshot, style_image(3), seed=1).cond, style.cond, atol=1e-3)
    unshuffled = encode(pack, styleshot, style_image(3), seed=0, shuffle=False)
    assert torch.equal(encode(pack, styleshot, style_image(3), seed=7, shuffle=False).cond, unshuffled.cond)
    torch.testing.assert_close(pair.cond[:1], unshuffled.cond, rtol=1e-5, atol=1e-5)  # one style per image
    assert not torch.allclose(pair.cond[0], pair.cond[1], atol=1e-3)

    same_twice = encode(pack, styleshot, style_image(3, 3), shuffle=False, blend=True)
    assert tuple(same_twice.cond.shape) == (1, 6, 768)
    torch.testing.assert_close(same_twice.cond, unshuffled.cond, rtol=1e-5, atol=1e-5)

    # The unconditional tokens: each scale's projection of a zero embedding, i.e. LayerNorm(bias).
    expected = []
    for projection in styleshot.adapter.model.style_image_proj_modules:
        bias = projection.proj.bias.detach().float().reshape(2, 768)
        expected.append(
            F.layer_norm(
                bias, (768,), projection.norm.weight.float(), projection.norm.bias.float(), projection.norm.eps
            )
        )
    torch.testing.assert_close(style.uncond, torch.cat(expected)[None], rtol=1e-5, atol=1e-5)
    assert torch.equal(pair.uncond, style.uncond)


def projected(adapter, embeds):
    """IP-Adapter's ImageProjModel on [3, 1024] embeddings, from the adapter's weights: [1, 6, 768]."""
    import torch.nn.functional as F

    tokens = []
    for scale, projection in enumerate(adapter.style_image_proj_modules):
        linear = F.linear(embeds[scale], projection.proj.weight.float(), projection.proj.bias.float()).reshape(2, 768)
        tokens.append(
            F.layer_norm(
                linear, (768,), projection.norm.weight.float(), projection.norm.bias.float(), projection.norm.eps
            )
        )
    return torch.cat(tokens)[None]


def test_blend_projects_the_mean_of_the_embeddings(pack, styleshot, pair):
    """Blending averages the two images' style embeddings and projects the mean once. Averaging the
    projected tokens instead (the LayerNorm makes the two differ) must fail this test."""
    embeds = []
    hook = styleshot.encoder.model.register_forward_hook(lambda module, args, output: embeds.append(output.float()))
    try:
        blended = encode(pack, styleshot, style_image(3, 4), shuffle=False, blend=True)
    finally:
        hook.remove()
    assert len(embeds) == 2 and tuple(blended.cond.shape) == (1, 6, 768)
    expected = projected(styleshot.adapter.model, torch.cat(embeds).mean(dim=0))
    torch.testing.assert_close(blended.cond, expected, rtol=1e-5, atol=1e-5)
    tokens_averaged = pair.cond.mean(dim=0, keepdim=True)
    assert (tokens_averaged - expected).abs().max() > 100 * 1e-5, "the comparison must tell the two orders apart"


def test_encode_style_reports_each_image_once(pack, styleshot, progress_reports):
    encode(pack, styleshot, style_image(3, 4, 5))
    assert progress_reports == [(1, 3), (2, 3), (3, 3)]


# --- 10. sampling --------------------------------------------------------------------------------


def ksample(comfy, model, cfg, latents=1):
    latent = {"samples": torch.zeros(latents, *LATENT)}
    return sampling.ksample(comfy, model, sampling.prompt(11), sampling.prompt(12), latent, cfg)


def test_sampling_with_the_patched_model(comfy, pack, sd15, styleshot, patched, pair):
    import comfy.model_management as mm

    plain, styled = ksample(comfy, sd15, 4.0), ksample(comfy, patched, 4.0)
    assert styled.shape == (1, *LATENT) and torch.isfinite(styled).all()
    assert not torch.allclose(styled, plain, atol=1e-3)
    assert any(m.model is styleshot.adapter for m in mm.current_loaded_models)
    # cfg 1: ComfyUI runs the cond chunk only.
    assert not torch.allclose(ksample(comfy, patched, 1.0), ksample(comfy, sd15, 1.0), atol=1e-3)


def test_sampling_a_latent_batch_with_one_style_per_latent(comfy, pack, sd15, styleshot, pair):
    StyleTokens = pack.models.style_adapter.StyleTokens
    both = ksample(comfy, apply(pack, sd15, styleshot, pair), 4.0, latents=2)
    first = ksample(
        comfy, apply(pack, sd15, styleshot, StyleTokens(cond=pair.cond[:1], uncond=pair.uncond)), 4.0, latents=2
    )
    # Projecting 1 or 2 token sets rounds differently (~1e-5 in eps); sigma_max 14.6 and cfg 4 amplify it.
    tolerance = {"rtol": 1e-3, "atol": 2e-3}
    torch.testing.assert_close(both[0], first[0], **tolerance)
    assert (both[1] - first[1]).abs().max() > 100 * tolerance["atol"], "latent 1 must take the second style"
