"""Image plumbing shared by the preprocessors: ComfyUI IMAGE <-> uint8 RGB, StyleShot's detect size.

ComfyUI IMAGE is [B, H, W, C] float 0..1 RGB. The published detectors read uint8 RGB photos, so
images are quantised to uint8 first; k/255 values (every image ComfyUI loads) round-trip exactly.
"""

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def check_images(images) -> None:
    """Refuse what no preprocessor can read, with a sentence the user can act on."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected an IMAGE batch shaped [batch, height, width, channels], got {shape}")
    if images.shape[0] == 0:
        raise ValueError("the image batch is empty: connect a node that outputs at least one image")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"the images have no pixels (size {images.shape[2]}x{images.shape[1]})")
    if images.shape[3] not in (1, 3, 4):
        raise ValueError(
            f"expected 1 (grey), 3 (RGB) or 4 (RGBA) channels, got {images.shape[3]}: convert the image to RGB first"
        )


def to_rgb_uint8(images):
    """[B, H, W, 1|3|4] float 0..1 -> [B, H, W, 3] uint8 RGB on the CPU.

    Grey is replicated and alpha is composited on white, as the reference `HWC3` does.
    NaN pixels become black and infinities are clipped, so they cannot poison a whole map.
    """
    check_images(images)
    x = torch.nan_to_num(images.detach().float().cpu(), nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 1)
    levels = torch.round(x * 255.0)
    channels = levels.shape[-1]
    if channels == 1:
        levels = levels.expand(-1, -1, -1, 3)
    elif channels == 4:
        alpha = levels[..., 3:] / 255.0
        levels = (levels[..., :3] * alpha + 255.0 * (1.0 - alpha)).clamp(0, 255).floor()
    return levels.to(torch.uint8)


# Resized pictures up to this size are built whole, as the references build them; only an extreme
# aspect ratio (a 16384x1 image resized to a 512 px short side is 8 gigapixels) goes past it.
MAX_RESIZED_PIXELS = 4096 * 4096


def resized_crop(picture, resized_size, crop_box, resample):
    """PIL `picture` resized to `resized_size` (width, height), then cropped to `crop_box` (left,
    top, right, bottom in the resized picture).

    Past MAX_RESIZED_PIXELS only the box's part of the source is resampled (Pillow's `box`, which
    still reads the pixels around it): the same picture up to rounding (a level in rare pixels).
    """
    if resized_size == picture.size:
        return picture.crop(crop_box)
    if resized_size[0] * resized_size[1] <= MAX_RESIZED_PIXELS:
        return picture.resize(resized_size, resample).crop(crop_box)
    scale_x, scale_y = picture.width / resized_size[0], picture.height / resized_size[1]
    left, top, right, bottom = crop_box
    box = (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)
    return picture.resize((right - left, bottom - top), resample, box=box)


def detect_size(height: int, width: int, resolution: int):
    """StyleShot/ControlNet `resize_image` geometry: short side to `resolution`, each side rounded
    to a multiple of 64 (aspect slightly distorted, no padding). 1080x1920 at 512 -> 512x896."""
    k = resolution / min(height, width)
    return int(np.round(height * k / 64.0)) * 64, int(np.round(width * k / 64.0)) * 64


def resize_for_detection(rgb, resolution: int):
    """Resize a uint8 batch [B, H, W, 3] as StyleShot's demo does: LANCZOS4 up, AREA down."""
    height, width = rgb.shape[1:3]
    target_h, target_w = detect_size(height, width, resolution)
    if (target_h, target_w) == (height, width):
        return rgb
    upscaling = resolution / min(height, width) > 1
    interpolation = cv2.INTER_LANCZOS4 if upscaling else cv2.INTER_AREA
    resized = [cv2.resize(img, (target_w, target_h), interpolation=interpolation) for img in rgb.numpy()]
    return torch.from_numpy(np.stack(resized))


def pad_to(x, min_side: int, multiple: int = 1):
    """Pad [B, C, H, W] at the bottom and right by edge replication so each side is at least
    `min_side` and a multiple of `multiple`: networks whose poolings or paddings cannot take smaller
    inputs run on tiny images, and the caller crops the result back to H x W."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-(-max(side, min_side) // multiple) * multiple - side for side in (height, width))
    if pad_h == pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def resize_maps(maps, size, binary: bool):
    """Resize [B, H, W] maps back to the input size: nearest for binary maps (edges stay binary),
    bilinear (antialiased when shrinking) for soft ones."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    x = maps.unsqueeze(1)
    if binary:
        x = F.interpolate(x, size=size, mode="nearest")  # cv2.INTER_NEAREST
    else:
        shrinking = size[0] < maps.shape[-2] or size[1] < maps.shape[-1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking).clamp(0, 1)
    return x.squeeze(1)
