"""StyleAligned's shared attention, AdaIN and GroupNorm sharing against a direct rendering of the
published equations (google/style-aligned sa_handler.py, docs/design/stylealigned.md 1.3-1.10), which
works on [B, heads, N, d] tensors of a [uncond half; cond half] batch with rows 0 and B/2 as the
references; ours works per chunk on ComfyUI's [B, N, heads*d] tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from style_suite.models.shared_attention import adain, latent_at, reference_level, shared_attention, shared_group_norm
from style_suite.patches.conditioning import reference_batch, stack_rows, with_reference_row

HEADS, D = 4, 16


# --- the published equations, written out -------------------------------------------------------


def expand_first(feat, scale=1.0):
    b = feat.shape[0]
    style = torch.stack((feat[0], feat[b // 2])).unsqueeze(1)
    if scale == 1:
        style = style.expand(2, b // 2, *feat.shape[1:])
    else:
        style = style.repeat(1, b // 2, *([1] * (feat.ndim - 1)))
        style = torch.cat([style[:, :1], scale * style[:, 1:]], dim=1)
    return style.reshape(*feat.shape)


def concat_first(feat, dim, scale=1.0):
    return torch.cat((feat, expand_first(feat, scale)), dim=dim)


def published_adain(feat):
    std = (feat.var(dim=-2, keepdim=True) + 1e-5).sqrt()
    mean = feat.mean(dim=-2, keepdim=True)
    return (feat - mean) / std * expand_first(std) + expand_first(mean)


def published_attention(q, k, v, adain_q=True, adain_k=True, adain_v=False, scale=1.0, shift=0.0):
    if adain_q:
        q = published_adain(q)
    if adain_k:
        k = published_adain(k)
    if adain_v:
        v = published_adain(v)
    k, v = concat_first(k, -2, scale), concat_first(v, -2)
    logits = torch.einsum("bhqd,bhkd->bhqk", q, k) * q.shape[-1] ** -0.5
    logits[:, :, :, q.shape[2] :] += shift
    return torch.einsum("bhqk,bhkd->bhqd", logits.softmax(-1), v)


# --- ComfyUI's tensor layout ---------------------------------------------------------------------


def heads_first(x):  # [B, N, heads*d] -> [B, heads, N, d]
    return x.reshape(x.shape[0], x.shape[1], HEADS, D).transpose(1, 2)


def tokens_first(x):
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], HEADS * D)


def sdpa(q, k, v, mask):
    """Plain multi-head attention with an additive mask, as ComfyUI's backends compute it."""
    mask = None if mask is None else mask[None, None]
    return tokens_first(F.scaled_dot_product_attention(heads_first(q), heads_first(k), heads_first(v), attn_mask=mask))


def qkv(rows, tokens=64, seed=0, dtype=torch.float32, std=1.0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(rows, tokens, HEADS * D, generator=g) * std + torch.randn(1, 1, HEADS * D, generator=g)).to(dtype)
        for _ in range(3)
    ]


def test_adain_matches_published_statistics():
    q, _, _ = qkv(6)
    expected = tokens_first(published_adain(heads_first(q)))
    torch.testing.assert_close(adain(q, rows_per_chunk=3), expected, atol=1e-5, rtol=1e-5)


def test_adain_leaves_reference_rows_exactly():
    q, _, _ = qkv(6)
    out = adain(q, rows_per_chunk=3)
    assert torch.equal(out[0], q[0]) and torch.equal(out[3], q[3])
    assert not torch.allclose(out[1], q[1])
    # the other rows now have the reference's token mean and unbiased std, per channel
    torch.testing.assert_close(out[1].mean(0), q[0].mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        out[1].var(0), q[0].var(0) + 1e-5 - 1e-5 * q[0].var(0) / (q[1].var(0) + 1e-5), atol=1e-4, rtol=1e-4
    )


def test_adain_of_fp16_activations_whose_variance_overflows_in_fp16():
    q, _, _ = qkv(4, dtype=torch.float16, std=300.0)
    assert torch.isinf(q.var(dim=1)).any()  # fp16 statistics would be inf here
    out = adain(q, rows_per_chunk=2)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    expected = adain(q.float(), rows_per_chunk=2)
    torch.testing.assert_close(out.float(), expected, atol=0.5, rtol=1e-3)


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (0.5, 0.0), (1.0, math.log(2)), (0.8, 0.3)])
@pytest.mark.parametrize("adain_values", [False, True])
def test_shared_attention_matches_published(scale, shift, adain_values):
    q, k, v = qkv(6, seed=1)  # [uncond x3; cond x3], as one ComfyUI call with cond_or_uncond [1, 0]
    ours = shared_attention(q, k, v, 3, sdpa, adain_values=adain_values, score_scale=scale, score_shift=shift)
    expected = published_attention(*map(heads_first, (q, k, v)), adain_v=adain_values, scale=scale, shift=shift)
    torch.testing.assert_close(ours, tokens_first(expected), atol=2e-5, rtol=1e-4)


def test_reference_rows_keep_their_plain_attention():
    q, k, v = qkv(6, seed=2)
    out = shared_attention(q, k, v, 3, sdpa, score_scale=0.5, score_shift=1.0, adain_values=True)
    plain = sdpa(q, k, v, None)
    torch.testing.assert_close(out[[0, 3]], plain[[0, 3]], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(out[[1, 2, 4, 5]], plain[[1, 2, 4, 5]], atol=1e-3)


def test_score_shift_of_ln2_counts_each_reference_token_twice():
    q, k, v = qkv(4, seed=3)
    shifted = shared_attention(q, k, v, 2, sdpa, adain_queries=False, adain_keys=False, score_shift=math.log(2))
    k2 = torch.cat([k, k[[0, 0, 2, 2]], k[[0, 0, 2, 2]]], 1)
    v2 = torch.cat([v, v[[0, 0, 2, 2]], v[[0, 0, 2, 2]]], 1)
    torch.testing.assert_close(shifted, sdpa(q, k2, v2, None), atol=1e-5, rtol=1e-5)


def test_score_scale_multiplies_reference_logits():
    q, k, v = qkv(4, seed=4)
    out = shared_attention(q, k, v, 4, sdpa, adain_queries=False, adain_keys=False, score_scale=0.5)
    k2 = torch.cat([k, 0.5 * k[[0, 0, 0, 0]]], 1)
    k2[0, 64:] = k[0]  # not on the reference row itself
    torch.testing.assert_close(out, sdpa(q, k2, torch.cat([v, v[[0, 0, 0, 0]]], 1), None), atol=1e-5, rtol=1e-5)


def test_chunks_never_mix():
    """Three chunks ([1, 0, 0]: uncond and two positive conds) give what each chunk gives alone."""
    q, k, v = qkv(9, seed=5)
    together = shared_attention(q, k, v, 3, sdpa, score_scale=0.7, score_shift=0.4)
    for chunk in range(3):
        rows = slice(3 * chunk, 3 * chunk + 3)
        alone = shared_attention(q[rows], k[rows], v[rows], 3, sdpa, score_scale=0.7, score_shift=0.4)
        torch.testing.assert_close(together[rows], alone, atol=1e-6, rtol=1e-6)


def test_share_off_keeps_adain_only():
    q, k, v = qkv(4, seed=6)
    out = shared_attention(q, k, v, 2, sdpa, share=False)
    torch.testing.assert_close(out, sdpa(adain(q, 2), adain(k, 2), v, None))


def test_group_norm_sharing_matches_published():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(6, 64, 8, 8, generator=g) * torch.rand(6, 1, 1, 1, generator=g) * 3
    norm = torch.nn.GroupNorm(32, 64)
    with torch.no_grad():
        norm.weight.normal_(1, 0.1, generator=g)
        norm.bias.normal_(0, 0.1, generator=g)
        expected = norm(concat_first(x, -2))[:, :, :8]
        ours = shared_group_norm(norm, x, rows_per_chunk=3)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(ours[[0, 3]], norm(x)[[0, 3]], atol=1e-5, rtol=1e-5)


def test_trajectory_lookup():
    sigmas = torch.tensor([0.03, 1.0, 2.0, 14.6])
    latents = torch.randn(4, 4, 2, 2)
    assert torch.equal(latent_at(sigmas, latents, 2.0), latents[2])
    assert torch.equal(latent_at(sigmas, latents, 0.0), latents[0])
    assert torch.equal(latent_at(sigmas, latents, 20.0), latents[3])
    torch.testing.assert_close(latent_at(sigmas, latents, 1.25), 0.75 * latents[1] + 0.25 * latents[2])


def test_reference_level_reproduces_published_offset():
    """research 2.2: step 0 sees zts[offset], steps 1..offset+1 see zts[offset+1], later steps zts[i]."""
    schedule = torch.linspace(14.0, 0.5, 50).tolist() + [0.0]
    expected = {0: 5, 1: 6, 3: 6, 6: 6, 7: 7, 30: 30, 49: 49}
    for step, index in expected.items():
        assert reference_level(schedule, schedule[step], 5) == schedule[index]
    assert [reference_level(schedule, s, 0) for s in schedule[:50]] == schedule[:50]
    short = schedule[:3] + [0.0]  # fewer steps than the offset: the lowest level
    assert reference_level(short, short[0], 5) == reference_level(short, short[1], 5) == short[2]


def test_stacked_prompts_keep_rows_and_pad_tokens_as_comfyui():
    a, b = torch.randn(1, 77, 8), torch.randn(1, 154, 8)
    cond, options = stack_rows(
        [[a, {"pooled_output": torch.ones(1, 3)}], [b, {"pooled_output": torch.zeros(1, 3), "x": 1}]]
    )
    assert cond.shape == (2, 154, 8)
    assert torch.equal(cond[0, :77], a[0]) and torch.equal(cond[0, 77:], a[0]) and torch.equal(cond[1], b[0])
    assert torch.equal(options["pooled_output"], torch.tensor([[1.0] * 3, [0.0] * 3])) and options["x"] == 1


def test_reference_row_goes_first():
    target = [[torch.randn(1, 77, 8), {"pooled_output": torch.zeros(1, 3), "area": "kept"}]]
    reference = [[torch.randn(1, 77, 8), {"pooled_output": torch.ones(1, 3)}]]
    ((cond, options),) = with_reference_row(target, 3, reference)
    assert cond.shape == (4, 77, 8) and torch.equal(cond[0], reference[0][0][0])
    assert all(torch.equal(cond[i], target[0][0][0]) for i in (1, 2, 3))
    assert options["pooled_output"][:, 0].tolist() == [1, 0, 0, 0] and options["area"] == "kept"
    negative = [[torch.randn(1, 77, 8), {}]]
    assert with_reference_row(negative, 3) == negative  # one row: ComfyUI repeats it
    with pytest.raises(ValueError, match="2 rows but the latent batch has 3"):
        with_reference_row([[torch.randn(2, 77, 8), {}]], 3, reference)


def test_reference_batch_masks():
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    reference = torch.ones(1, 4, 8, 8)
    kept = reference_batch(latent, reference, keep_reference=True)
    assert torch.equal(kept["samples"][0], reference[0]) and kept["samples"].shape[0] == 3
    assert kept["noise_mask"][:, 0, 0, 0].tolist() == [0, 1, 1]
    assert "noise_mask" not in reference_batch(latent, reference, keep_reference=False)
    masked = reference_batch({**latent, "noise_mask": torch.full((1, 16, 16), 0.5)}, reference, keep_reference=False)
    assert masked["noise_mask"].shape == (3, 1, 16, 16) and masked["noise_mask"][:, 0, 0, 0].tolist() == [1, 0.5, 0.5]
