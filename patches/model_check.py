"""Refuse MODELs a feature was not trained for, before sampling starts."""

import comfy.model_base


def cross_attention_layers(base):
    """The cross-attention modules of a model's diffusion network (attn2 of each transformer block);
    `base` is the ComfyUI model a MODEL (ModelPatcher) wraps, `MODEL.model`."""
    network = getattr(base, "diffusion_model", None)
    if network is None:
        return []
    return [m.attn2 for m in network.modules() if getattr(m, "attn2", None) is not None]


def require_sd1(base, feature) -> None:
    """SD1.x: a UNet with 16 cross-attention layers reading 768-wide text tokens (`base` as in
    cross_attention_layers)."""
    layers = cross_attention_layers(base)
    widths = {layer.to_k.in_features for layer in layers if hasattr(layer, "to_k")}
    if isinstance(base, comfy.model_base.BaseModel) and len(layers) == 16 and widths == {768}:
        return
    config = getattr(base, "model_config", None)  # ComfyUI's detected architecture: SD20, SDXL, SD3, Flux...
    found = type(config if config is not None else base).__name__
    if widths:
        found += f" with {len(layers)} cross-attention layers of width {'/'.join(map(str, sorted(widths)))}"
    raise ValueError(
        f"{feature} needs an SD1.x model (like SD1.5: 16 cross-attention layers reading 768-wide text tokens), "
        f"but this MODEL is {found}. Its weights were trained on SD1.5 only and cannot attach to SDXL, SD2 or "
        "DiT models: load an SD1.5-based checkpoint."
    )
