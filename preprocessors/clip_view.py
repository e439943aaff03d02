"""The picture of a style image that InST's CLIP ViT-L/14 sees (docs/design/inst.md 2.2, 2.5, 2.7).

InST's official code resizes the style image to 512x512, maps it to [-1, 1] and casts that
straight to uint8: every pixel channel becomes 0, except 255 where it was exactly 0 and 1 where it
was exactly 255 (x86-64 wrap-around). CLIP therefore sees an almost black picture, and the
inversion network was trained on such pictures. `official` rebuilds that picture; `corrected`
shows CLIP the style image itself. Both then go through CLIPProcessor's own steps (transformers,
as InST used): shortest side to 224 with PIL bicubic, centre crop to 224.
"""

import numpy as np
import torch
from PIL import Image

from .image import resized_crop, to_rgb_uint8

CLIP_SIZE = 224
INST_SIZE = 512
PREPROCESSING = ("official", "corrected")


def clip_view(image, preprocessing):
    """One IMAGE [1, H, W, C] (0..1) -> the 224x224 IMAGE [1, 224, 224, 3] CLIP is given, as
    uint8 levels / 255 so ComfyUI's CLIP vision preprocessing only normalises it."""
    rgb = to_rgb_uint8(image)[0].numpy()
    if preprocessing == "official":
        rgb = _official_cast(np.asarray(Image.fromarray(rgb).resize((INST_SIZE, INST_SIZE), Image.LANCZOS)))
    elif preprocessing != "corrected":
        raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING)}, got {preprocessing!r}")
    pixels = _clip_resize_crop(Image.fromarray(rgb))
    return torch.from_numpy(pixels).float().div(255).unsqueeze(0)


def _official_cast(levels):
    """uint8 levels u -> what `(2 * u / 255 - 1).astype(np.uint8)` gives on x86-64."""
    return np.where(levels == 0, 255, np.where(levels == 255, 1, 0)).astype(np.uint8)


def _clip_resize_crop(picture):
    """CLIPImageProcessor's resize (shortest side to 224, the other truncated, PIL bicubic) and
    centre crop -> uint8 [224, 224, 3]."""
    width, height = picture.size
    long = int(CLIP_SIZE * max(width, height) / min(width, height))
    size = (CLIP_SIZE, long) if width <= height else (long, CLIP_SIZE)
    top, left = (size[1] - CLIP_SIZE) // 2, (size[0] - CLIP_SIZE) // 2
    return np.array(resized_crop(picture, size, (left, top, left + CLIP_SIZE, top + CLIP_SIZE), Image.BICUBIC))
