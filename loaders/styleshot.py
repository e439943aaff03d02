"""Load StyleShot's `style_aware_encoder.bin` and `ip.bin` (contour or lineart release), as published
or converted to safetensors, with strict layout checks (docs/design/styleshot.md sections 1.6 and 2)."""

from functools import cache

import torch

from ..models.style_adapter import StyleShotAdapter
from ..models.style_encoder import StyleAwareEncoder
from . import annotators
from .sd15_controlnet import controlnet_layout
from .weights import CHOOSE_STYLE_FILE, check_layout, materialize, read_state_dict

ENCODER_KIND = "StyleShot style-aware encoder (style_aware_encoder.bin: image_encoder.*, cnn.*, 608 tensors)"
ADAPTER_KIND = "StyleShot adapter (ip.bin: adapter_modules.*, style_image_proj_modules.*)"
CONTENT_KIND = "StyleShot content-fusion encoder (the controlnet.* part of ip.bin, 340 tensors)"

# CLIP's own patch embedding is in the file but unused: StyleShot's experts replace it.
UNUSED_CLIP_EMBEDDINGS = {
    "image_encoder.vision_model.embeddings.class_embedding": (1280,),
    "image_encoder.vision_model.embeddings.patch_embedding.weight": (1280, 3, 14, 14),
    "image_encoder.vision_model.embeddings.position_embedding.weight": (257, 1280),
}
# Files saved with transformers < 4.31 also carry CLIP's position ids.
OPTIONAL_POSITION_IDS = "image_encoder.vision_model.embeddings.position_ids"
UNET_COPY = "unet."  # ip.bin's redundant SD1.5 UNet: never read
CONTENT = "controlnet."


def _meta(cls):
    with torch.device("meta"):
        return cls()


@cache
def encoder_layout() -> dict:
    layout = {k: tuple(v.shape) for k, v in _meta(StyleAwareEncoder).state_dict().items()}
    return {**layout, **UNUSED_CLIP_EMBEDDINGS}


@cache
def adapter_layout() -> dict:
    return {k: tuple(v.shape) for k, v in _meta(StyleShotAdapter).state_dict().items()}


def recognise(state_dict):
    """Name what a state dict is, to explain a file in the wrong slot."""
    keys = set(state_dict)
    if any(k.startswith("image_encoder.") for k in keys) and any(k.startswith("cnn.") for k in keys):
        return "the StyleShot style-aware encoder (style_aware_encoder.bin): choose it as the style encoder"
    if any(k.startswith(("adapter_modules.", "style_image_proj_modules.")) for k in keys):
        return "a StyleShot adapter (ip.bin): choose it as the StyleShot adapter"
    if "controlnet_cond_embedding.conv_in.weight" in keys:
        return "a ControlNet in diffusers format: load it with ComfyUI's Load ControlNet Model"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "a Stable Diffusion checkpoint: load it with Load Checkpoint"
    if any(k.startswith("vision_model.") for k in keys):
        return "a CLIP vision model: it belongs in models/clip_vision"
    if "image_proj" in keys or "ip_adapter" in keys or any(k.endswith("to_k_ip.weight") for k in keys):
        return "an IP-Adapter model, not StyleShot: use an IP-Adapter pack"
    one_vector_set = len(keys) == 1 and getattr(next(iter(state_dict.values())), "ndim", 0) in (1, 2)
    if one_vector_set or keys & {"emb_params", "clip_l"}:  # diffusers learned_embeds, kohya, SDXL
        return f"a textual-inversion embedding: {CHOOSE_STYLE_FILE}"
    return annotators.recognise(state_dict)


def read_encoder_weights(path) -> dict:
    """The checked tensors the encoder uses, from the published file or a converted one (which
    leaves out CLIP's unused embeddings and position ids)."""
    state_dict = read_state_dict(path, keep=lambda key: key != OPTIONAL_POSITION_IDS)
    expected = {k: v for k, v in encoder_layout().items() if k in state_dict or k not in UNUSED_CLIP_EMBEDDINGS}
    check_layout(state_dict, expected, path, ENCODER_KIND, recognise)
    return {k: v for k, v in state_dict.items() if k not in UNUSED_CLIP_EMBEDDINGS}


def read_adapter_weights(path):
    """(style tensors, content-fusion tensors without their `controlnet.` prefix, or {}), checked;
    the UNet copy is never read."""
    state_dict = read_state_dict(path, keep=lambda key: not key.startswith(UNET_COPY))
    content = {k[len(CONTENT) :]: v for k, v in state_dict.items() if k.startswith(CONTENT)}
    style = {k: v for k, v in state_dict.items() if not k.startswith(CONTENT)}
    check_layout(style, adapter_layout(), path, ADAPTER_KIND, recognise)
    if content:
        check_layout(content, controlnet_layout(), path, CONTENT_KIND)
    return style, content


def load_encoder(path) -> StyleAwareEncoder:
    """`style_aware_encoder.bin` as published (fp16 CLIP blocks, fp32 rest) or converted -> fp32 module."""
    return materialize(_meta(StyleAwareEncoder), read_encoder_weights(path))


def load_adapter(path) -> StyleShotAdapter:
    """`ip.bin` as published (with or without its UNet copy and content-fusion encoder) or converted
    -> StyleShotAdapter in fp32. Its `content_fusion` attribute holds the content-fusion encoder's
    diffusers state dict (memory-mapped from the file where the format allows), or None for a file
    without it (the stage-1 release)."""
    style, content = read_adapter_weights(path)
    adapter = materialize(_meta(StyleShotAdapter), style)
    adapter.content_fusion = content or None
    return adapter
