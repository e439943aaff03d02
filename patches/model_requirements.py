"""What a MODEL must be for each feature, checked before sampling starts: a sentence that says why
instead of a shape error inside the UNet."""

import comfy.model_base
import comfy.model_sampling
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel


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


def require_unet(base, feature):
    """StyleAligned hooks the self-attention of Stable Diffusion's UNet (SD1.x, SD2.x, SDXL);
    `base` is MODEL.model. Returns the UNet."""
    network = getattr(base, "diffusion_model", None)
    if isinstance(base, comfy.model_base.BaseModel) and type(network) is UNetModel:
        return network
    raise ValueError(
        f"{feature} works on Stable Diffusion UNet models (SD1.x, SD2.x, SDXL), but this MODEL is "
        f"{type(base).__name__} ({type(network).__name__}), whose attention layers it cannot share. "
        "Load an SD1.5 or SDXL checkpoint."
    )


def require_ddpm(sampling, feature):
    """SD1.x's discrete DDPM noise schedule (eps or v prediction), where sqrt(alpha_bar) is
    1 / sqrt(1 + sigma^2): InST's stochastic inversion rebuilds its latent through that tie."""
    if (
        isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete)
        and not isinstance(sampling, comfy.model_sampling.ModelSamplingDiscreteEDM)
        and isinstance(sampling, comfy.model_sampling.EPS)
        and not isinstance(sampling, comfy.model_sampling.EDM)
    ):
        return
    raise ValueError(
        f"{feature} follows the discrete 1000-step DDPM schedule of SD1.x, but this MODEL samples with "
        f"{type(sampling).__name__}: remove the node that changed its sampling (ModelSamplingDiscrete/EDM/...)"
    )
