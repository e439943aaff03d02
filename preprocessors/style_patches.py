"""StyleShot's style-image preprocessing and multi-scale patch tree (docs/design/styleshot.md 1.1-1.2).

The short side goes to 512 (PIL bilinear, as torchvision's Resize does on PIL images), a centre
512 crop is taken and mapped to [-1, 1], and the crop is cut into 8 patches of 128 px, 16 of 64
px and 32 of 32 px (the off-diagonal 32 px blocks, 12.5 % of the crop, are never seen).
"""

import numpy as np
import torch
from PIL import Image

from ..models.style_encoder import PATCHES_PER_IMAGE
from .image import check_images, resized_crop, to_rgb_uint8

STYLE_SIZE = 512


def style_crop(images) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, C] 0..1 -> [B, 3, 512, 512] in [-1, 1], as StyleProcessor does:
    Resize(512, BILINEAR) on the 8-bit image, CenterCrop(512), ToTensor, Normalize(0.5, 0.5)."""
    if images.ndim == 4 and images.shape[-1] == 4:
        images = images[..., :3]  # PIL's convert("RGB") drops alpha
    check_images(images)
    crops = []
    for one in images.split(1):  # quantised one by one: a float copy of one image at a time
        image = Image.fromarray(to_rgb_uint8(one)[0].numpy())
        width, height = image.size
        short, long = min(width, height), max(width, height)
        resized_long = int(STYLE_SIZE * long / short)  # torchvision's rounding (truncation)
        size = (STYLE_SIZE, resized_long) if width <= height else (resized_long, STYLE_SIZE)
        left = int(round((size[0] - STYLE_SIZE) / 2.0))
        top = int(round((size[1] - STYLE_SIZE) / 2.0))
        crop = (left, top, left + STYLE_SIZE, top + STYLE_SIZE)
        crops.append(np.asarray(resized_crop(image, size, crop, Image.BILINEAR)))
    pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    return pixels * 2.0 - 1.0


def _quadrants(x):
    """Top-left, bottom-left, top-right, bottom-right quarters of [..., S, S] (crop_4_patches order)."""
    half = x.shape[-1] // 2
    return x[..., :half, :half], x[..., half:, :half], x[..., :half, half:], x[..., half:, half:]


def patch_tree(crops: torch.Tensor, generator=None):
    """[B, 3, 512, 512] -> (high [B*8, 3, 128, 128], middle [B*16, 3, 64, 64], low [B*32, 3, 32, 32]),
    image-major. Within each image and group the patches are shuffled by `generator` (a seeded
    torch.Generator), as StyleShot shuffles them; None keeps the published depth-first order."""
    high, middle, low = [], [], []
    for quarter in _quadrants(crops):
        blocks = _quadrants(quarter)
        high += [blocks[0], blocks[3]]
        for block in (blocks[1], blocks[2]):
            smaller = _quadrants(block)
            middle += [smaller[0], smaller[3]]
            for small in (smaller[1], smaller[2]):
                smallest = _quadrants(small)
                low += [smallest[0], smallest[3]]
    groups = [torch.stack(group, dim=1) for group in (high, middle, low)]  # [B, n, 3, s, s]
    if generator is not None:
        groups = [
            torch.stack([image[torch.randperm(n, generator=generator)] for image in group])
            for group, n in zip(groups, PATCHES_PER_IMAGE)
        ]
    return tuple(group.flatten(0, 1) for group in groups)
