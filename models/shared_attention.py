"""StyleAligned's shared self-attention, AdaIN and GroupNorm sharing (docs/design/stylealigned.md 1.3-1.10,
5.4), and the reference trajectory lookup of its reference-image mode (2.2, 2.5).

Tensors are ComfyUI's: q, k, v are [B, N, heads*d] after the projections. A batch is made of chunks
of `rows_per_chunk` rows (one chunk per cond or uncond entry); row 0 of each chunk is that chunk's reference,
so cond and uncond never share a reference.
"""

import torch

from .adain import mean_std


def adain(x, rows_per_chunk):
    """Every row of x [B, N, C] given the token statistics of its chunk's reference row: mean and
    standard deviation over tokens (dim 1) per channel, unbiased variance + eps, computed in fp32
    (fp16 variances overflow). Reference rows come back unchanged."""
    mean, std = mean_std(x, dim=1)
    chunks = x.shape[0] // rows_per_chunk
    ref_mean = mean[::rows_per_chunk].repeat_interleave(rows_per_chunk, 0)
    ref_std = std[::rows_per_chunk].repeat_interleave(rows_per_chunk, 0)
    gain = ref_std / std  # (x - mean) / std * ref_std + ref_mean == x * gain + bias
    bias = ref_mean - mean * gain
    gain.view(chunks, rows_per_chunk, -1)[:, 0] = 1
    bias.view(chunks, rows_per_chunk, -1)[:, 0] = 0
    return torch.addcmul(bias, x.float(), gain).to(x.dtype)


def shared_keys_values(k, v, rows_per_chunk, score_scale=1.0):
    """K' = [k ; s * k_ref] and V' = [v ; v_ref] along the tokens: each row's own tokens, then its
    chunk reference's. s = score_scale on every row but the reference itself (a temperature on
    attention to the reference); values are never scaled."""
    b, n, c = k.shape
    k4 = k.reshape(b // rows_per_chunk, rows_per_chunk, n, c)
    v4 = v.reshape(b // rows_per_chunk, rows_per_chunk, n, c)
    k_ref = k4[:, :1].expand(-1, rows_per_chunk, -1, -1)
    if score_scale != 1:
        row_scale = torch.full((1, rows_per_chunk, 1, 1), score_scale, dtype=k.dtype, device=k.device)
        row_scale[:, 0] = 1
        k_ref = k_ref * row_scale
    v_ref = v4[:, :1].expand(-1, rows_per_chunk, -1, -1)
    return torch.cat([k4, k_ref], 2).reshape(b, 2 * n, c), torch.cat([v4, v_ref], 2).reshape(b, 2 * n, c)


def score_shift_mask(tokens, shift, like):
    """The additive attention mask [1, 2 * tokens] that adds `shift` to the logits of the reference
    tokens (the second half of K'), or None for no shift."""
    if shift == 0:
        return None
    mask = torch.zeros(1, 2 * tokens, dtype=like.dtype, device=like.device)
    mask[:, tokens:] = shift
    return mask


def shared_attention(
    q,
    k,
    v,
    rows_per_chunk,
    attention,
    *,
    share=True,
    adain_queries=True,
    adain_keys=True,
    adain_values=False,
    score_scale=1.0,
    score_shift=0.0,
):
    """StyleAligned's self-attention for a batch of chunks of `rows_per_chunk` rows. `attention(q, k, v, mask)`
    is plain multi-head attention (k, v may have more tokens than q; mask is additive)."""
    if adain_queries:
        q = adain(q, rows_per_chunk)
    if adain_keys:
        k = adain(k, rows_per_chunk)
    if adain_values:
        v = adain(v, rows_per_chunk)
    if not share:
        return attention(q, k, v, None)
    mask = score_shift_mask(k.shape[1], score_shift, q)
    k, v = shared_keys_values(k, v, rows_per_chunk, score_scale)
    return attention(q, k, v, mask)


def shared_group_norm(norm, x, rows_per_chunk):
    """GroupNorm `norm` on x [B, C, H, W] with each image's group statistics pooled with its chunk
    reference's: the reference stacked under the image along H, normalised, cut back."""
    b, height = x.shape[0], x.shape[-2]
    grouped = x.reshape(b // rows_per_chunk, rows_per_chunk, *x.shape[1:])
    reference = grouped[:, :1].expand_as(grouped).reshape(x.shape)
    return norm(torch.cat([x, reference], dim=-2))[..., :height, :]


def latent_at(sigmas, latents, sigma):
    """The trajectory's latent at noise level `sigma`: linear in sigma between the two stored levels
    around it (x = x0 + sigma * eps moves linearly in sigma along a DDIM path), the end latents
    outside. `sigmas` [N+1] ascending, `latents` [N+1, C, H, W]."""
    i = int(torch.searchsorted(sigmas, torch.tensor([sigma], dtype=sigmas.dtype))[0])
    if i == 0:
        return latents[0]
    if i == len(sigmas):
        return latents[-1]
    low, high = float(sigmas[i - 1]), float(sigmas[i])
    return torch.lerp(latents[i - 1], latents[i], (sigma - low) / (high - low))


def reference_level(schedule, sigma, offset):
    """The noise level at which the reference row is fed when the model is evaluated at `sigma`,
    for a sampling `schedule` (descending sigmas): StyleAligned's offset (research 2.2). The first
    step sees the level of step `offset`; later steps see their own level, held no higher than
    step offset+1's."""
    levels = [float(s) for s in schedule if s > 0]
    last = len(levels) - 1
    if sigma >= levels[0]:
        return levels[min(offset, last)]
    return min(sigma, levels[min(offset + 1, last)])
