"""StyleAligned nodes in a real ComfyUI, on the full-size random SD1.5 UNet (and a small SDXL-class
model): sampling with ComfyUI's own KSampler, batch layouts ComfyUI makes (cfg > 1, cfg 1, several
positive conds, a batch split for memory), attention backends, patch lifetime, and the reference
image mode (inversion against the published DDIM inversion run on diffusers' UNet)."""

import math

import pytest
import torch

from fixtures import sd15_unet
from fixtures.sampling import ksample, prompt, recorded, relative
from fixtures.style_aligned_nodes import align, node
from fixtures.styleshot_nodes import tensors

SIZE = (16, 16)  # latent: 128 px, every attention layer has >= 4 tokens


def empty(rows, size=SIZE):
    return {"samples": torch.zeros(rows, 4, *size)}


@pytest.fixture(scope="module")
def conds():
    return prompt(1), prompt(2)  # positive, negative


@pytest.fixture(scope="module")
def plain_batch(comfy, sd15, conds):
    return ksample(comfy, sd15, *conds, empty(3))


@pytest.fixture(scope="module")
def aligned(pack, sd15):
    return align(pack, sd15)


@pytest.fixture(scope="module")
def aligned_batch(comfy, aligned, conds):
    return ksample(comfy, aligned, *conds, empty(3))


# --- 1. batch alignment on SD1.5 ---------------------------------------------------------------


def test_reference_row_is_unchanged_and_other_rows_take_its_style(plain_batch, aligned_batch):
    assert torch.isfinite(aligned_batch).all()
    assert relative(aligned_batch[0], plain_batch[0]) < 1e-4
    for row in (1, 2):
        assert relative(aligned_batch[row], plain_batch[row]) > 1e-2


def test_cond_and_uncond_keep_their_own_reference(comfy, aligned, conds, aligned_batch, monkeypatch):
    """The same sampling with cond and uncond in separate UNet calls (ComfyUI's split when memory
    is short) gives the same images, so in the joint call neither chunk sees the other's reference;
    making the uncond reference everyone's (one chunk of 6 rows) does change them."""
    joint_model, joint = recorded(aligned)
    assert torch.equal(ksample(comfy, joint_model, *conds, empty(3)), aligned_batch)
    assert {tuple(layout) for _, layout, _ in joint.calls} == {(1, 0)}

    split_model, split = recorded(aligned)
    monkeypatch.setattr(aligned.model, "memory_required", lambda *args, **kwargs: float("inf"))
    split_batch = ksample(comfy, split_model, *conds, empty(3))
    monkeypatch.undo()
    assert sorted(tuple(layout) for _, layout, _ in split.calls) == [(0,), (0,), (1,), (1,)]
    assert relative(split_batch, aligned_batch) < 1e-4

    mixed_model, _ = recorded(aligned, layout=[1])
    mixed = ksample(comfy, mixed_model, *conds, empty(3))
    assert relative(mixed[1:], aligned_batch[1:]) > 1e-2


def test_cfg_1_and_several_positive_conds(comfy, sd15, aligned, conds):
    positive, negative = conds
    for cfg, positive_conds, layout in [(1.0, positive, (0,)), (4.0, positive + prompt(3), (1, 0, 0))]:
        model, recorder = recorded(aligned)
        out = ksample(comfy, model, positive_conds, negative, empty(3), cfg=cfg)
        assert {tuple(sorted(layout_seen)) for _, layout_seen, _ in recorder.calls} == {tuple(sorted(layout))}
        plain = ksample(comfy, sd15, positive_conds, negative, empty(3), cfg=cfg)
        assert relative(out[0], plain[0]) < 1e-4
        assert relative(out[1:], plain[1:]) > 1e-2


def test_a_batch_of_one_is_left_alone(comfy, sd15, aligned, conds):
    assert torch.equal(ksample(comfy, aligned, *conds, empty(1)), ksample(comfy, sd15, *conds, empty(1)))


def test_one_token_layers_give_no_nan(comfy, pack, sd15, conds):
    """An 8x8 latent leaves the middle block a single token (docs/design/stylealigned.md addendum)."""
    shifted = align(pack, sd15, shift=math.log(2), scale=0.5)
    out = ksample(comfy, shifted, *conds, empty(2, (8, 8)))
    plain = ksample(comfy, sd15, *conds, empty(2, (8, 8)))
    assert torch.isfinite(out).all()
    assert relative(out[0], plain[0]) < 1e-4


def test_input_model_and_shared_weights_are_untouched(comfy, pack, sd15, conds, plain_batch):
    options = repr(sd15.model_options)
    object_patches, wrappers = dict(sd15.object_patches), repr(sd15.wrappers)
    aligned = align(pack, sd15, shift=0.5)
    ksample(comfy, aligned, *conds, empty(3))
    assert (
        repr(sd15.model_options) == options
        and sd15.object_patches == object_patches
        and repr(sd15.wrappers) == wrappers
    )
    # the norm patches live on the clone: the plain MODEL samples as before it existed
    assert torch.equal(ksample(comfy, sd15, *conds, empty(3)), plain_batch)
    norms = [m for m in sd15.model.diffusion_model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 61 and all(m.forward.__func__ is type(m).forward for m in norms)


def test_patches_land_where_asked(pack, sd15):
    SharedAttention, SharedGroupNorm = (
        pack.patches.style_aligned.SharedAttention,
        pack.patches.style_aligned.SharedGroupNorm,
    )

    def attn1(model):
        return model.model_options["transformer_options"]["patches_replace"]["attn1"]

    inputs = [("input", i) for i in (1, 2, 4, 5, 7, 8)]
    outputs = [("output", i) for i in range(3, 12)]
    assert set(attn1(align(pack, sd15))) == {*inputs, ("middle", 0), *outputs}
    assert set(attn1(align(pack, sd15, layers="output blocks"))) == set(outputs)
    assert set(attn1(align(pack, sd15, layers="middle block"))) == {("middle", 0)}
    with_norms = align(pack, sd15)
    assert sum(isinstance(p, SharedGroupNorm) for p in with_norms.object_patches.values()) == 61
    assert not align(pack, sd15, group_norm=False).object_patches
    again = align(pack, align(pack, sd15), shift=1.0, group_norm=False)  # a second Batch Align replaces the first
    assert all(
        isinstance(p, SharedAttention) and p.previous is None and p.settings.score_shift == 1.0
        for p in attn1(again).values()
    )
    assert not again.object_patches and not again.wrappers.get("diffusion_model")


def test_the_keys_wrapped_are_those_comfyui_runs(pack):
    """ComfyUI's BasicTransformerBlock runs (block, id, index) where that key has a patch, else
    (block, id): a two-block transformer with a patch for index 1 only reaches (block, id) from index
    0; a key for an index the transformer does not have is never reached."""
    keys_reaching = pack.patches.attention.keys_reaching
    replaced = {("output", 0, 1): "one", ("output", 0, 5): "stale", ("output", 1, 0): "zero"}
    assert keys_reaching(replaced, "output", 0, depth=2) == [("output", 0), ("output", 0, 1)]
    assert keys_reaching(replaced, "output", 1, depth=1) == [("output", 1, 0)]
    both = {("input", 4, 0): "a", ("input", 4, 1): "b"}
    assert keys_reaching(both, "input", 4, depth=2) == [("input", 4, 0), ("input", 4, 1)]
    assert keys_reaching({}, "middle", 0, depth=10) == [("middle", 0)]


def test_another_packs_attn1_patch_is_kept(pack):
    """A patch already on a layer (like SAG's ('middle', 0, 0)) runs on the shared keys and values."""
    AlignSettings, SharedAttention = (
        pack.patches.style_aligned.AlignSettings,
        pack.patches.style_aligned.SharedAttention,
    )

    seen = []

    def other(q, k, v, extra):
        seen.append(k.shape[1])
        return torch.zeros_like(q)

    q, k, v = (tensors(i, 4, 16, 64) for i in (1, 2, 3))
    extra = {"cond_or_uncond": [1, 0], "n_heads": 2, "activations_shape": [4, 64, 4, 4]}
    out = SharedAttention(AlignSettings(), other)(q, k, v, extra)
    assert seen == [32] and torch.equal(out, torch.zeros_like(q))
    SharedAttention(AlignSettings(), other)(q, k, v, {**extra, "activations_shape": [8, 64, 2, 4]})
    assert seen == [32, 16]  # a token layout another patch changed (HyperTile): plain keys


@pytest.mark.parametrize("backend", ["attention_basic", "attention_pytorch", "attention_sub_quad", "attention_split"])
def test_every_attention_backend(pack, backend, monkeypatch):
    import comfy.ldm.modules.attention as attention_module

    AlignSettings, SharedAttention = (
        pack.patches.style_aligned.AlignSettings,
        pack.patches.style_aligned.SharedAttention,
    )

    q, k, v = (tensors(i, 6, 16, 64) for i in (4, 5, 6))
    extra = {"cond_or_uncond": [1, 0], "n_heads": 4, "dim_head": 16, "activations_shape": [6, 64, 4, 4]}
    layer = SharedAttention(AlignSettings(score_scale=0.5, score_shift=math.log(2), adain_values=True))
    monkeypatch.setattr(attention_module, "optimized_attention", getattr(attention_module, backend))
    out = layer(q, k, v, extra)

    def reference(q, k, v, mask):  # einsum attention with the additive mask
        heads = lambda t: t.reshape(t.shape[0], t.shape[1], 4, 16).transpose(1, 2)  # noqa: E731
        logits = heads(q) @ heads(k).transpose(-1, -2) / 4 + (0 if mask is None else mask)
        return (logits.softmax(-1) @ heads(v)).transpose(1, 2).reshape(q.shape)

    expected = pack.models.shared_attention.shared_attention(
        q, k, v, 3, reference, adain_values=True, score_scale=0.5, score_shift=math.log(2)
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_sdxl_class_model(comfy, pack):
    model = sd15_unet.tiny_comfy_model("sdxl", seed=3)
    positive = prompt(5, width=2048, pooled_output=tensors(6, 1, 1280))
    negative = prompt(7, width=2048, pooled_output=tensors(8, 1, 1280))
    plain = ksample(comfy, model, positive, negative, empty(3))
    out = ksample(comfy, align(pack, model, group_norm=False), positive, negative, empty(3))
    assert relative(out[0], plain[0]) < 1e-4 and relative(out[1:], plain[1:]) > 1e-2


# --- 2. reference-image mode -----------------------------------------------------------------


STEPS = 3


@pytest.fixture(scope="module")
def reference_latent():
    return {"samples": tensors(9, 1, 4, *SIZE) * 0.8}


@pytest.fixture(scope="module")
def trajectory(pack, sd15, conds, reference_latent):
    positive, negative = conds
    return node(pack, "InvertReference").invert(
        sd15, prompt(10), negative, reference_latent, STEPS, "ddim_uniform", 2.0
    )[0]


def published_inversion(unet, z, text, negative, steps, cfg):
    """google/style-aligned inversion.py's DDIM inversion (`next_step` over the ascending timesteps,
    the noise predicted at (z, t)), with SD1.5's scheduler (scaled_linear betas, steps_offset 1,
    set_alpha_to_one False) on diffusers' UNet. Returns the latents after each step."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas = torch.cumprod(1 - betas, 0)
    stride = 1000 // steps
    latents = []
    for t in [i * stride + 1 for i in range(steps)]:
        with torch.no_grad():
            eps_u, eps_c = unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([negative, text])).sample.chunk(2)
        eps = eps_u + cfg * (eps_c - eps_u)
        a_t = alphas[t - stride] if t - stride >= 0 else alphas[0]
        a_next = alphas[t]
        x0 = (z - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        z = (a_next**0.5 * x0 + (1 - a_next) ** 0.5 * eps).float()
        latents.append(z)
    return latents


def test_inversion_matches_published_ddim_inversion(unets, trajectory, conds, reference_latent, sd15):
    assert trajectory.latents.shape == (STEPS + 1, 4, *SIZE) and torch.all(
        trajectory.sigmas[1:] > trajectory.sigmas[:-1]
    )
    clean = sd15.model.process_latent_in(reference_latent["samples"])
    assert torch.equal(trajectory.latents[0:1], clean)
    to_vp = lambda x, sigma: x / (1 + sigma**2) ** 0.5  # noqa: E731  ComfyUI's x = z / sqrt(alpha_bar)
    z0 = to_vp(clean, trajectory.sigmas[0])
    expected = published_inversion(unets[0], z0, prompt(10)[0][0], conds[1][0][0], STEPS, 2.0)
    for i, z in enumerate(expected, start=1):
        ours = to_vp(trajectory.latents[i], trajectory.sigmas[i])
        assert relative(ours, z) < 1e-4, i
    assert relative(trajectory.latents[-1], trajectory.latents[0]) > 1  # it did move up to high noise


def test_inversion_reports_each_step_once(pack, sd15, conds, reference_latent, progress_reports):
    node(pack, "InvertReference").invert(sd15, prompt(10), conds[1], reference_latent, STEPS, "ddim_uniform", 2.0)
    assert progress_reports == [(step, STEPS) for step in range(1, STEPS + 1)]


def apply_reference(pack, model, conds, latent, mode, offset=1, **inputs):
    return node(pack, "ReferenceApply").apply(model, *conds, latent, mode, offset, **inputs)


def test_inverted_reference_row_follows_the_trajectory_with_the_offset(comfy, pack, aligned, conds, trajectory):
    model, positive, negative, latent = apply_reference(
        pack, aligned, conds, empty(2), "inverted", offset=1, trajectory=trajectory
    )
    assert latent["samples"].shape == (3, 4, *SIZE) and "noise_mask" not in latent
    assert positive[0][0].shape[0] == 3 and torch.equal(positive[0][0][0], prompt(10)[0][0][0])
    model, recorder = recorded(model)
    out = ksample(
        comfy, model, positive, negative, latent, cfg=4.0, steps=STEPS, sampler="ddim", scheduler="ddim_uniform"
    )
    assert out.shape == (3, 4, *SIZE) and torch.isfinite(out).all()
    # sampler levels: sigma(t=2*stride+1), sigma(t=stride+1), sigma(t=1); offset 1 -> the reference is
    # fed at step 1's level on steps 0 and 1, then at step 2's: trajectory entries 2, 1, 1
    fed = [x[[0, 3]] for x, _, _ in recorder.calls]
    assert len(fed) == STEPS
    for x, entry in zip(fed, [2, 1, 1]):
        assert torch.equal(x[0], trajectory.latents[entry]) and torch.equal(x[1], trajectory.latents[entry])
    context = recorder.calls[0][2]
    uncond_first = recorder.calls[0][1] == [1, 0]
    cond_rows = context[3:] if uncond_first else context[:3]
    assert torch.equal(cond_rows[0], prompt(10)[0][0][0]) and torch.equal(cond_rows[1], conds[0][0][0][0])


def test_renoise_mode_keeps_the_reference(comfy, pack, aligned, conds, reference_latent, sd15):
    model, positive, negative, latent = apply_reference(
        pack, aligned, conds, empty(2), "renoise", reference_latent=reference_latent, reference_positive=prompt(10)
    )
    assert latent["noise_mask"][:, 0, 0, 0].tolist() == [0, 1, 1]
    out = ksample(comfy, model, positive, negative, latent)
    torch.testing.assert_close(out[0], reference_latent["samples"][0])
    assert torch.isfinite(out).all()


def test_reference_mode_refusals(comfy, pack, sd15, aligned, conds, trajectory, reference_latent):
    with pytest.raises(ValueError, match="needs the trajectory input"):
        apply_reference(pack, aligned, conds, empty(2), "inverted")
    with pytest.raises(ValueError, match="needs the reference_latent input"):
        apply_reference(pack, aligned, conds, empty(2), "renoise")
    with pytest.raises(ValueError, match="reference_latent is 128x128 px .* latent to generate is 64x128 px"):
        apply_reference(pack, aligned, conds, empty(2, (16, 8)), "renoise", reference_latent=reference_latent)
    with pytest.raises(ValueError, match="inverted reference is 128x128 px"):
        apply_reference(pack, aligned, conds, empty(2, (8, 8)), "inverted", trajectory=trajectory)
    with pytest.raises(ValueError, match="must hold one image"):
        apply_reference(pack, aligned, conds, empty(2), "renoise", reference_latent=empty(2))
    model, positive, negative, latent = apply_reference(pack, sd15, conds, empty(2), "inverted", trajectory=trajectory)
    with pytest.raises(ValueError, match="add Batch Align to this MODEL too"):
        ksample(comfy, model, positive, negative, latent)


# --- 3. one prompt per image ---------------------------------------------------------------------


def test_prompt_batch_rows_are_comfyui_text_encodes(comfy, pack, sd15_checkpoint):
    from comfy.sd import load_checkpoint_guess_config

    _, clip, *_ = load_checkpoint_guess_config(str(sd15_checkpoint), output_vae=False, output_model=False)
    long = ", ".join(["a very long prompt about a toy train in a garden"] * 12)  # over 77 tokens: 2 chunks
    lines = ["a toy train. macro photo", "", long, "  a toy car  "]
    conditioning, count = node(pack, "PromptBatch").encode(clip, "\n".join(lines))
    assert count == 3 and len(conditioning) == 1
    cond, options = conditioning[0]
    assert cond.shape == (3, 154, 768) and options["pooled_output"].shape == (3, 768)
    for row, text in enumerate([lines[0], long, "a toy car"]):
        ((expected, expected_options),) = comfy[0].CLIPTextEncode().encode(clip, text)[0]
        tiled = expected.repeat(1, 154 // expected.shape[1], 1)  # ComfyUI's own padding for batched prompts
        torch.testing.assert_close(cond[row : row + 1], tiled)
        torch.testing.assert_close(options["pooled_output"][row : row + 1], expected_options["pooled_output"])
    with pytest.raises(ValueError, match="prompts is empty"):
        node(pack, "PromptBatch").encode(clip, "\n \n")
