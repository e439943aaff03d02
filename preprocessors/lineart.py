"""Line maps as StyleShot's LineartDetector draws them, from the generator in models/lineart_generator.py."""

import torch

from .image import pad_to

# The smallest side the published generator takes: the residual blocks' reflection padding needs
# at least 2 px after the two stride-2 convolutions, so 5 px before.
MIN_SIDE = 5


def lineart_levels(net, x):
    """x: [B, 3, H, W] RGB levels 0..255 -> the line map as uint8 levels (float) [B, H, W].

    The generator runs on the image as it is, as the published detector does: instance norm takes
    whole-image statistics, so padding to a multiple of 4 would change every pixel of the map. Its
    output, rounded up to a multiple of 4, is cropped back to H x W. Only sides under MIN_SIDE, which
    the published code cannot take at all, are padded (edge replication).
    """
    height, width = x.shape[-2:]
    line = net(pad_to(x / 255.0, MIN_SIDE))[:, 0, :height, :width].float()
    return torch.floor((line * 255.0).clamp(0, 255))


def lineart(net, x, invert: bool = False):
    """x: [B, 3, H, W] RGB levels 0..255 -> [B, H, W] in 0..1. StyleShot uses the raw polarity
    (dark lines on white); `invert` gives ControlNet's white lines on black."""
    levels = lineart_levels(net, x)
    return (255.0 - levels if invert else levels) / 255.0
