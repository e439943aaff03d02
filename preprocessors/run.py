"""Run a detector over an IMAGE batch: quantise, optional detect resolution, chunks, resize back."""

import torch

from .image import check_images, detect_size, resize_for_detection, resize_maps, to_rgb_uint8

# Pixels per forward pass on an accelerator. HED and lineart peak near 800 bytes per pixel in fp32,
# so ~1 M pixels (four 512x512 images) stays under 1 GB while still batching small images.
PIXELS_PER_CHUNK = 4 * 512 * 512
# The largest image detected in one pass (4096x4096): at 800 bytes per pixel about 13 GB in fp32.
# Larger ones are refused before any work, since the networks cannot be tiled without changing the map.
MAX_DETECT_PIXELS = 4096 * 4096


def images_per_pass(device, height: int, width: int) -> int:
    """How many images go through the network at once. On CPU one at a time is fastest (a batch of 4
    at 512 px took 1.2-1.5x longer per image: bench/preprocessors.py), so batching is for GPUs."""
    if torch.device(device).type == "cpu":
        return 1
    return max(1, PIXELS_PER_CHUNK // (height * width))


def check_detect_size(size, detected) -> None:
    """Refuse a detect size (height, width) over MAX_DETECT_PIXELS for images of `size`."""
    if detected[0] * detected[1] <= MAX_DETECT_PIXELS:
        return
    raise ValueError(
        f"the image is {size[1]}x{size[0]} and would be detected at {detected[1]}x{detected[0]} "
        f"({detected[0] * detected[1] / 1e6:.1f} megapixels), over the limit of {MAX_DETECT_PIXELS / 1e6:.1f} "
        "(about 0.8 GB of memory per megapixel): set 'resolution' (1024 keeps the map detailed), "
        "or crop or scale the image down first"
    )


def map_images(
    images,
    detect,
    *,
    resolution=0,
    binary=False,
    device="cpu",
    dtype=torch.float32,
    output_device="cpu",
    on_progress=None,
):
    """Apply `detect` to every image and return an IMAGE batch of the same size as the input.

    detect: [b, 3, h, w] RGB levels 0..255 in `dtype` on `device` -> [b, h, w] maps in 0..1.
    resolution: 0 runs at the input size; otherwise StyleShot's short-side/multiple-of-64 rule,
        with the map resized back (nearest when `binary`, so binary edges stay binary).
    on_progress: called after each pass with the number of images finished so far (ComfyUI's
        progress and interrupt).
    Returns [B, H, W, 3] float32 on `output_device`, the map repeated on the three channels.
    """
    if resolution and resolution < 64:
        raise ValueError(f"resolution must be 0 (the image's own size) or at least 64, got {resolution}")
    check_images(images)
    size = tuple(images.shape[1:3])
    detected = detect_size(*size, resolution) if resolution else size
    check_detect_size(size, detected)
    maps = []
    finished = 0
    # quantised chunk by chunk, so the uint8 and float copies exist for one chunk at a time
    for chunk in torch.split(images, images_per_pass(device, *detected)):
        rgb = to_rgb_uint8(chunk)
        if resolution:
            rgb = resize_for_detection(rgb, resolution)
        x = rgb.to(device).permute(0, 3, 1, 2).to(dtype)
        with torch.inference_mode():
            result = detect(x).float()
        maps.append(resize_maps(result, size, binary).to(output_device))
        finished += chunk.shape[0]
        if on_progress is not None:
            on_progress(finished)
    return torch.cat(maps).unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()
