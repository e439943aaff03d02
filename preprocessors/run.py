"""Run a detector over an IMAGE batch: quantise, optional detect resolution, chunks, resize back."""

import torch

from .image import resize_for_detection, resize_maps, to_rgb_uint8

# Pixels per forward pass on an accelerator. HED and lineart peak near 800 bytes per pixel in fp32,
# so ~1 M pixels (four 512x512 images) stays under 1 GB while still batching small images.
PIXELS_PER_CHUNK = 4 * 512 * 512


def images_per_pass(device, height: int, width: int) -> int:
    """How many images go through the network at once. On CPU one at a time is fastest (a batch of 4
    at 512 px took 1.2-1.5x longer per image: bench/preprocessors.py), so batching is for GPUs."""
    if torch.device(device).type == "cpu":
        return 1
    return max(1, PIXELS_PER_CHUNK // (height * width))


def map_images(images, detect, *, resolution=0, binary=False, device="cpu", dtype=torch.float32,
               output_device="cpu", on_progress=None):
    """Apply `detect` to every image and return an IMAGE batch of the same size as the input.

    detect: [b, 3, h, w] RGB levels 0..255 in `dtype` on `device` -> [b, h, w] maps in 0..1.
    resolution: 0 runs at the input size; otherwise StyleShot's short-side/multiple-of-64 rule,
        with the map resized back (nearest when `binary`, so binary edges stay binary).
    on_progress: called with the number of images just finished (ComfyUI's progress and interrupt).
    Returns [B, H, W, 3] float32 on `output_device`, the map repeated on the three channels.
    """
    if resolution and resolution < 64:
        raise ValueError(f"resolution must be 0 (the image's own size) or at least 64, got {resolution}")
    rgb = to_rgb_uint8(images)
    size = tuple(rgb.shape[1:3])
    if resolution:
        rgb = resize_for_detection(rgb, resolution)
    maps = []
    for chunk in torch.split(rgb, images_per_pass(device, rgb.shape[1], rgb.shape[2])):
        x = chunk.to(device).permute(0, 3, 1, 2).to(dtype)
        with torch.inference_mode():
            result = detect(x).float()
        maps.append(resize_maps(result, size, binary).to(output_device))
        if on_progress is not None:
            on_progress(chunk.shape[0])
    return torch.cat(maps).unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()
