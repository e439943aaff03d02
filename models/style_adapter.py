"""StyleShot's style projection and decoupled cross-attention weights (`ip.bin`, docs/design/styleshot.md
sections 1.5, 2.2-2.3 and 3).

Key names match the published `ip.bin` without its `unet.`/`controlnet.` parts:
`style_image_proj_modules.{0,1,2}.{proj,norm}.*` and `adapter_modules.{1,3,...,31}.to_{k,v}_ip.weight`.
"""

from dataclasses import dataclass

import torch
from torch import nn

EMBED_DIM = 1024  # style-aware encoder output, per scale
CONTEXT_DIM = 768  # SD1.x cross-attention width
TOKENS_PER_SCALE = 2

# adapter index (diffusers' attn_processors order: down, up, mid; odd = attn2) ->
# (ComfyUI block, block id) of that cross-attention layer, and its width.
ADAPTER_LAYERS = {
    1: (("input", 1), 320),
    3: (("input", 2), 320),
    5: (("input", 4), 640),
    7: (("input", 5), 640),
    9: (("input", 7), 1280),
    11: (("input", 8), 1280),
    13: (("output", 3), 1280),
    15: (("output", 4), 1280),
    17: (("output", 5), 1280),
    19: (("output", 6), 640),
    21: (("output", 7), 640),
    23: (("output", 8), 640),
    25: (("output", 9), 320),
    27: (("output", 10), 320),
    29: (("output", 11), 320),
    31: (("middle", 0), 1280),
}


_ALL = tuple(ADAPTER_LAYERS)
# Which layers carry style. StyleShot applies all 16; the subsets are IPAdapter_plus's SD1.5
# choices, for users who want less of the style image's layout (not from the StyleShot paper).
LAYER_PRESETS = {
    "all 16 (published)": _ALL,
    "style layers (input 1-5, output 5-11)": (1, 3, 5, 7, 17, 19, 21, 23, 25, 27, 29),
    "output blocks only": tuple(i for i in _ALL if ADAPTER_LAYERS[i][0][0] == "output"),
}


@dataclass(frozen=True)
class StyleTokens:
    """STYLESHOT_STYLE: cond [S, 6, 768] (one set per style image, or one blended set) and the
    unconditional tokens [1, 6, 768] (the projection of a zero embedding)."""

    cond: torch.Tensor
    uncond: torch.Tensor


class ImageProjection(nn.Module):
    """One scale's 1024-d embedding -> 2 tokens of 768 (IP-Adapter's ImageProjModel)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(EMBED_DIM, TOKENS_PER_SCALE * CONTEXT_DIM)
        self.norm = nn.LayerNorm(CONTEXT_DIM)

    def forward(self, embeds):
        return self.norm(self.proj(embeds).reshape(-1, TOKENS_PER_SCALE, CONTEXT_DIM))


class KeyValue(nn.Module):
    """The style keys and values of one cross-attention layer."""

    def __init__(self, width):
        super().__init__()
        self.to_k_ip = nn.Linear(CONTEXT_DIM, width, bias=False)
        self.to_v_ip = nn.Linear(CONTEXT_DIM, width, bias=False)


class StyleShotAdapter(nn.Module):
    def __init__(self):
        super().__init__()
        self.style_image_proj_modules = nn.ModuleList(ImageProjection() for _ in range(3))
        self.adapter_modules = nn.ModuleDict({str(i): KeyValue(width) for i, (_, width) in ADAPTER_LAYERS.items()})
        self.content_fusion = None  # the file's content-fusion encoder weights, set by the loader

    def project(self, embeds):
        """Encoder output [B, 3, 1024] (high, middle, low) -> style tokens [B, 6, 768]."""
        return torch.cat([proj(embeds[:, i]) for i, proj in enumerate(self.style_image_proj_modules)], dim=1)

    def uncond_tokens(self):
        """[1, 6, 768]: the projection of zeros, as training dropped style (not zero tokens)."""
        weight = self.style_image_proj_modules[0].proj.weight
        return self.project(torch.zeros(1, 3, EMBED_DIM, device=weight.device, dtype=weight.dtype))

    def keys_values(self, index, style):
        """Layer `index`'s style keys and values: (k_cond, v_cond, k_uncond, v_uncond), projected
        from `style` (StyleTokens) with its to_k_ip/to_v_ip. They depend on nothing else, so
        callers compute them once, not at every step."""
        layer = self.adapter_modules[str(index)]
        weight = layer.to_k_ip.weight
        cond, uncond = style.cond.to(weight), style.uncond.to(weight)
        return layer.to_k_ip(cond), layer.to_v_ip(cond), layer.to_k_ip(uncond), layer.to_v_ip(uncond)


def route(cond, uncond, cond_or_uncond, rows):
    """Stack per-chunk values for a batch made of `len(cond_or_uncond)` chunks of `rows` rows:
    a chunk marked 1 (uncond) takes `uncond`, any other `cond`. Each value has 1 row (shared by
    the chunk) or `rows` rows (one per latent)."""
    parts = []
    for chunk in cond_or_uncond:
        value = uncond if chunk == 1 else cond
        if value.shape[0] == 1:
            value = value.expand(rows, *value.shape[1:])
        elif value.shape[0] != rows:
            raise ValueError(
                f"the style has {value.shape[0]} token sets but the latent batch has {rows} images: "
                "encode 1 style image (or turn on 'blend') or as many style images as latents"
            )
        parts.append(value)
    return torch.cat(parts)


def style_attention(q, keys_values, cond_or_uncond, heads, attention):
    """The style half of decoupled cross-attention: `attention(q, K_ip, V_ip, heads)` with a
    separate softmax over the 6 style tokens, sharing the query `q` [B, N, C]; `keys_values` is
    StyleShotAdapter.keys_values() of the layer."""
    rows = q.shape[0] // len(cond_or_uncond)
    k_cond, v_cond, k_uncond, v_uncond = keys_values
    k = route(k_cond, k_uncond, cond_or_uncond, rows).to(q)
    v = route(v_cond, v_uncond, cond_or_uncond, rows).to(q)
    return attention(q, k, v, heads)
