"""StyleShot's decoupled cross-attention as ComfyUI attn2 replace patches (docs/design/styleshot.md 3,
docs/design/comfyui.md 3.6).

Each of the chosen SD1.5 cross-attention layers gets a `StyleLayer`: ordinary text attention (or
whatever patch already sat on that layer) plus `strength * attention(q, K_ip, V_ip)` over the 6
style tokens, routed per batch chunk by `cond_or_uncond`. IPAdapter_plus-style `.add()` callbacks
chain onto it, and cloning the MODEL shares the weights and tokens instead of copying them.
"""

import copy

import torch.nn.functional as F

from ..models.style_adapter import ADAPTER_LAYERS, route, style_attention
from .attention import ChainedPatch, attention, keys_reaching


class StyleInjection:
    """What every layer of one Apply Style node shares: the adapter weights (a ModelPatcher that
    ComfyUI loads with the UNet), the style tokens, strength, sigma range and optional mask."""

    def __init__(self, adapter_patcher, style, strength, sigma_start, sigma_end, mask=None):
        self.adapter_patcher = adapter_patcher
        self.style = style
        self.strength = strength
        self.sigma_start = sigma_start
        self.sigma_end = sigma_end
        self.mask = mask  # [M, H, W] 0..1 or None
        self._step = (None, None)  # (sigmas tensor of the current step, its sigma as a float)
        self._keys_values = {}  # per (layer, device, dtype): fixed for the whole sampling run
        self._masks = {}  # resized masks per (batch layout, token grid, device, dtype)

    def sigma(self, extra):
        """The step's sigma, or None where ComfyUI gives none. Reading it waits for the GPU, so it
        is read once per step (every layer of a step gets the same sigmas tensor), not per layer."""
        sigmas = extra.get("sigmas")
        if sigmas is None:
            return None
        if self._step[0] is not sigmas:
            self._step = (sigmas, float(sigmas.reshape(-1)[0]))
        return self._step[1]

    def active(self, extra) -> bool:
        """Whether style applies at this step."""
        if self.strength == 0:
            return False
        sigma = self.sigma(extra)
        return sigma is None or self.sigma_end <= sigma <= self.sigma_start

    def keys_values(self, index, q):
        key = (index, q.device, q.dtype)
        if key not in self._keys_values:
            projected = self.adapter_patcher.model.keys_values(index, self.style)
            self._keys_values[key] = tuple(t.to(q) for t in projected)
        return self._keys_values[key]

    def __call__(self, index, q, extra):
        cond_or_uncond = extra["cond_or_uncond"]
        out = style_attention(
            q,
            self.keys_values(index, q),
            cond_or_uncond,
            extra["n_heads"],
            lambda q, k, v, heads: attention(q, k, v, extra),
        )
        if self.mask is not None:
            out = out * self._mask_for(q, extra, len(cond_or_uncond))
        return out * self.strength

    def _mask_for(self, q, extra, chunks):
        """The mask resized to this layer's token grid, one row per batch row: [B, N, 1]; the
        same for every step, so resized once per layout."""
        grid = _token_grid(q.shape[1], extra)
        key = (q.shape[0], chunks, grid, q.device, q.dtype)
        if key not in self._masks:
            self._masks[key] = self._resized_mask(q, grid, chunks)
        return self._masks[key]

    def _resized_mask(self, q, grid, chunks):
        mask = F.interpolate(self.mask[:, None].to(q), size=grid, mode="bilinear")
        mask = mask.reshape(mask.shape[0], -1, 1)
        rows = q.shape[0] // chunks
        try:
            return route(mask, mask, [0] * chunks, rows)
        except ValueError:
            raise ValueError(
                f"the attention mask has {mask.shape[0]} masks but the latent batch has {rows} images: "
                "use 1 mask or one per latent"
            ) from None


def _token_grid(tokens, extra):
    """(h, w) of a layer's tokens: from `activations_shape` where ComfyUI gives it, else from the
    latent size and the downscale that yields `tokens` (the UNet rounds odd sizes up)."""
    shape = extra.get("activations_shape")
    if shape is not None and shape[-2] * shape[-1] == tokens:
        return int(shape[-2]), int(shape[-1])
    height, width = extra["original_shape"][-2:]
    for scale in (1, 2, 4, 8):
        h, w = -(-height // scale), -(-width // scale)
        if h * w == tokens:
            return h, w
    raise ValueError(
        f"StyleShot Apply Style: the attention mask cannot be laid on a layer of {tokens} tokens, which a "
        f"{height}x{width} latent does not give: another node changes the UNet's internal sizes (Kohya Deep "
        "Shrink, HiDiffusion). Remove attn_mask or that node."
    )


class StyleLayer(ChainedPatch):
    """attn2 replace for one cross-attention layer (a patch already on it is kept and runs first)."""

    def __init__(self, injection, index, previous=None):
        super().__init__(previous)
        self.injection = injection
        self.index = index
        self.callbacks = []  # (callback, kwargs) added by IPAdapter_plus-style `.add()`

    def __call__(self, q, k, v, extra):
        out = self.attend(q, k, v, extra)
        if self.injection.active(extra):
            out = out + self.injection(self.index, q, extra)
        if self.callbacks:
            sigma = self.injection.sigma(extra)
            sigma = float("inf") if sigma is None else sigma
            for callback, kwargs in self.callbacks:
                if kwargs.get("sigma_end", 0.0) <= sigma <= kwargs.get("sigma_start", float("inf")):
                    out = out + callback(out, q, k, v, extra, **kwargs)
        return out.to(q.dtype)

    def add(self, callback, **kwargs):
        """IPAdapter_plus's Attn2Replace API: another adapter's output is added after ours."""
        self.callbacks.append((callback, kwargs))

    def models(self):
        return [self.injection.adapter_patcher, *super().models()]

    def __deepcopy__(self, memo):
        """MODEL.clone() deep-copies patches: share the weights and tokens, copy what `.add()` changes."""
        clone = copy.copy(self)
        clone.previous = copy.deepcopy(self.previous, memo)
        clone.callbacks = [(callback, dict(kwargs)) for callback, kwargs in self.callbacks]
        return clone


def apply_style(model, injection, layers):
    """A clone of `model` with StyleShot on the cross-attention layers `layers` (adapter indices)."""
    patched = model.clone()
    replaced = patched.model_options["transformer_options"].get("patches_replace", {}).get("attn2", {})
    for index in layers:
        block, block_id = ADAPTER_LAYERS[index][0]
        # SD1.x's spatial transformers hold one block each (index 0): wrap whatever ComfyUI would run there
        for key in keys_reaching(replaced, block, block_id, depth=1):
            patched.set_model_patch_replace(StyleLayer(injection, index, replaced.get(key)), "attn2", *key)
    return patched
