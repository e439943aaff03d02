"""Load StyleShot's `style_aware_encoder.bin` and `ip.bin` (contour or lineart release), as published
or converted to safetensors, with strict layout checks (docs/design/styleshot.md sections 1.6 and 2)."""

from ..models.style_adapter import StyleShotAdapter
from ..models.style_encoder import StyleAwareEncoder
from .layouts import (
    CONTENT_FUSION,
    STYLE_ADAPTER,
    STYLE_ENCODER,
    UNUSED_CLIP_EMBEDDINGS,
    adapter_layout,
    empty,
    encoder_layout,
)
from .recognise import recognise
from .sd15_controlnet import controlnet_layout
from .weights import check_layout, materialize, read_state_dict

# Files saved with transformers < 4.31 also carry CLIP's position ids.
OPTIONAL_POSITION_IDS = "image_encoder.vision_model.embeddings.position_ids"
UNET_COPY = "unet."  # ip.bin's redundant SD1.5 UNet: never read
CONTENT = "controlnet."


def read_encoder_weights(path) -> dict:
    """The checked tensors the encoder uses, from the published file or a converted one (which
    leaves out CLIP's unused embeddings and position ids)."""
    state_dict = read_state_dict(path, keep=lambda key: key != OPTIONAL_POSITION_IDS)
    expected = {k: v for k, v in encoder_layout().items() if k in state_dict or k not in UNUSED_CLIP_EMBEDDINGS}
    check_layout(state_dict, expected, path, STYLE_ENCODER, recognise)
    return {k: v for k, v in state_dict.items() if k not in UNUSED_CLIP_EMBEDDINGS}


def read_adapter_weights(path):
    """(style tensors, content-fusion tensors without their `controlnet.` prefix, or {}), checked;
    the UNet copy is never read."""
    state_dict = read_state_dict(path, keep=lambda key: not key.startswith(UNET_COPY))
    content = {k[len(CONTENT) :]: v for k, v in state_dict.items() if k.startswith(CONTENT)}
    style = {k: v for k, v in state_dict.items() if not k.startswith(CONTENT)}
    check_layout(style, adapter_layout(), path, STYLE_ADAPTER, recognise)
    if content:
        check_layout(content, controlnet_layout(), path, CONTENT_FUSION)
    return style, content


def load_encoder(path) -> StyleAwareEncoder:
    """`style_aware_encoder.bin` as published (fp16 CLIP blocks, fp32 rest) or converted -> fp32 module."""
    return materialize(empty(StyleAwareEncoder), read_encoder_weights(path))


def load_adapter(path) -> StyleShotAdapter:
    """`ip.bin` as published (with or without its UNet copy and content-fusion encoder) or converted
    -> StyleShotAdapter in fp32. Its `content_fusion` attribute holds the content-fusion encoder's
    diffusers state dict (memory-mapped from the file where the format allows), or None for a file
    without it (the stage-1 release)."""
    style, content = read_adapter_weights(path)
    adapter = materialize(empty(StyleShotAdapter), style)
    adapter.content_fusion = content or None
    return adapter
