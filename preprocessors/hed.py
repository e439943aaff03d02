"""HED's edge maps as published (ControlNet 1.1's HEDdetector, StyleShot's SOFT_HEDdetector) from
the network in models/hed_network.py: soft edges, the safe step, and StyleShot's "Contour"."""

import cv2
import numpy as np
import torch

from .image import pad_to

# Four 2x2 max-pools: smaller images would leave the last stage with no pixels.
MIN_SIDE = 16


def soft_edge_levels(projections, safe: bool = False):
    """The published HED post-processing: sigmoid(mean of the 5 side outputs upsampled to full size).

    Returns uint8 [B, H, W] (floor(255 * edge), as the reference casts). It makes the reference's
    own numpy/cv2 calls (float32 INTER_LINEAR resize, float32 mean, float64 sigmoid), because a
    1e-6 difference in a logit moves pixels across the contour threshold.
    """
    maps = [p[:, 0].float().cpu().numpy() for p in projections]
    batch, height, width = maps[0].shape
    levels = np.empty((batch, height, width), np.uint8)
    for b in range(batch):
        edges = np.stack([cv2.resize(m[b], (width, height), interpolation=cv2.INTER_LINEAR) for m in maps], axis=2)
        with np.errstate(over="ignore"):  # exp of a large logit overflows to inf: sigmoid is then 0
            edge = 1 / (1 + np.exp(-np.mean(edges, axis=2).astype(np.float64)))
        if safe:
            edge = safe_step(edge)
        levels[b] = (edge * 255.0).clip(0, 255).astype(np.uint8)
    return levels


def safe_step(edge, step: int = 2):
    """ControlNet's quantisation that hides the faint copy of the photo in soft maps: 3 levels."""
    return (edge.astype(np.float32) * float(step + 1)).astype(np.int32).astype(np.float32) / float(step)


def contour_levels(levels, threshold: int = 200, dilate_size: int = 3, dilate_iterations: int = 1):
    """StyleShot's "Contour" on uint8 levels [B, H, W]: levels strictly above `threshold` become 255,
    the rest 0, then cv2.dilate with a dilate_size x dilate_size all-ones kernel.

    As published (`[> t] = 255`, then `[< 255] = 0`), level 255 survives even at threshold 255.
    """
    binary = np.where((levels > threshold) | (levels == 255), 255, 0).astype(np.uint8)
    kernel = np.ones((dilate_size, dilate_size), np.uint8)
    return np.stack([cv2.dilate(b, kernel, iterations=dilate_iterations) for b in binary])


def edge_levels(net, x, safe: bool = False):
    """soft_edge_levels of the network's side outputs for x [B, 3, H, W]. Images under 16 px are
    padded by edge replication and the levels cropped back to H x W."""
    height, width = x.shape[-2:]
    return soft_edge_levels(net(pad_to(x, MIN_SIDE)), safe)[:, :height, :width]


def soft_edges(net, x, safe: bool = False):
    """HED soft edges. x: [B, 3, H, W] RGB levels 0..255 -> [B, H, W] in 0..1, white on black."""
    return torch.from_numpy(edge_levels(net, x, safe)) / 255.0


def contour(net, x, threshold: int = 200, dilate_size: int = 3, dilate_iterations: int = 1):
    """StyleShot "Contour" (SOFT_HEDdetector): HED without the safe step, binarised, dilated.

    x: [B, 3, H, W] RGB levels 0..255 -> [B, H, W] in {0, 1}, white contours on black.
    """
    levels = contour_levels(edge_levels(net, x), threshold, dilate_size, dilate_iterations)
    return torch.from_numpy(levels) / 255.0
