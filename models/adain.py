"""Adaptive instance normalisation: give features another set's per-channel mean and deviation.

As InST and StyleAligned publish it: unbiased variance + 1e-5, statistics in fp32 (fp16
variances overflow), the result in the input's dtype. A single value has no unbiased variance (NaN):
its deviation is taken as 0, so a 1x1 latent gets the style's mean instead of NaN.
"""

import torch

EPS = 1e-5


def mean_std(x, dim, eps=EPS):
    """fp32 mean and standard deviation of x over `dim` (kept as size-1 dimensions)."""
    dims = (dim,) if isinstance(dim, int) else dim
    single = all(x.shape[d] == 1 for d in dims)
    var, mean = torch.var_mean(x.float(), dim=dim, keepdim=True, correction=0 if single else 1)
    return mean, (var + eps).sqrt()


def latent_adain(content, style, strength=1.0):
    """content [B, C, H, W] with each channel's spatial statistics taken from `style` [1 or B, C,
    h, w] (InST's `adain` on latents); `strength` blends from the content (0) to the result (1)."""
    content_mean, content_std = mean_std(content, dim=(2, 3))
    style_mean, style_std = mean_std(style, dim=(2, 3))
    matched = (content.float() - content_mean) / content_std * style_std + style_mean
    return torch.lerp(content.float(), matched, strength).to(content.dtype)
