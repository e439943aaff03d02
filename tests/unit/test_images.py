"""IMAGE handling shared by the preprocessors: conversion, detect size, batching, bad input."""

import cv2
import numpy as np
import pytest
import torch

from fixtures import images
from style_suite.preprocessors import run
from style_suite.preprocessors.image import detect_size, resize_for_detection, to_rgb_uint8
from style_suite.preprocessors.run import map_images


def test_detect_size_follows_the_short_side_and_multiple_of_64_rule():
    assert detect_size(1080, 1920, 512) == (512, 896)
    assert detect_size(512, 512, 512) == (512, 512)
    assert detect_size(100, 300, 256) == (256, 768)
    assert detect_size(700, 500, 512) == (704, 512)


def test_detect_resize_uses_lanczos4_up_and_area_down():
    photo = images.photo(90, 120, 0)
    up = resize_for_detection(torch.from_numpy(photo[None]), 256)[0].numpy()
    np.testing.assert_array_equal(up, cv2.resize(photo, (320, 256), interpolation=cv2.INTER_LANCZOS4))
    down = resize_for_detection(torch.from_numpy(photo[None]), 64)[0].numpy()
    np.testing.assert_array_equal(down, cv2.resize(photo, (64, 64), interpolation=cv2.INTER_AREA))


def test_loaded_images_round_trip_to_their_uint8_pixels():
    photo = images.photo(17, 23, 1)
    np.testing.assert_array_equal(to_rgb_uint8(images.comfy_image(photo))[0].numpy(), photo)


def test_grey_is_replicated_and_rgba_is_composited_on_white():
    grey = images.photo(8, 9, 1, channels=1)
    np.testing.assert_array_equal(to_rgb_uint8(images.comfy_image(grey))[0].numpy(), np.repeat(grey, 3, axis=2))
    rgba = images.photo(8, 9, 2, channels=4)
    color, alpha = rgba[..., :3].astype(np.float32), rgba[..., 3:].astype(np.float32) / 255.0
    expected = (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)  # HWC3
    np.testing.assert_array_equal(to_rgb_uint8(images.comfy_image(rgba))[0].numpy(), expected)


def test_nan_and_inf_pixels_do_not_spread():
    batch = torch.full((1, 4, 4, 3), 0.5)
    batch[0, 0, 0] = float("nan")
    batch[0, 1, 1] = float("inf")
    out = to_rgb_uint8(batch)[0]
    assert out[0, 0].tolist() == [0, 0, 0] and out[1, 1].tolist() == [255, 255, 255] and out[2, 2].tolist() == [128] * 3


@pytest.mark.parametrize(
    "batch,message",
    [
        (torch.zeros(0, 8, 8, 3), "the image batch is empty"),
        (torch.zeros(8, 8, 3), r"expected an IMAGE batch shaped \[batch, height, width, channels\], got \(8, 8, 3\)"),
        (torch.zeros(1, 8, 8, 2), "expected 1 \\(grey\\), 3 \\(RGB\\) or 4 \\(RGBA\\) channels, got 2"),
        (torch.zeros(1, 0, 8, 3), "the images have no pixels"),
    ],
)
def test_unreadable_batches_are_refused_clearly(batch, message):
    with pytest.raises(ValueError, match=message):
        map_images(batch, lambda x: x[:, 0])


@pytest.mark.parametrize("resolution", [1, 63, -64])
def test_detect_resolutions_below_64_are_refused(resolution):
    with pytest.raises(ValueError, match="resolution must be 0 .* or at least 64"):
        map_images(torch.zeros(1, 8, 8, 3), lambda x: x[:, 0], resolution=resolution)


def test_one_image_per_pass_on_cpu_and_up_to_a_pixel_budget_elsewhere():
    assert run.images_per_pass("cpu", 64, 64) == 1
    assert run.images_per_pass(torch.device("cuda", 0), 512, 512) == 4
    assert run.images_per_pass("cuda", 64, 64) == run.PIXELS_PER_CHUNK // (64 * 64)
    assert run.images_per_pass("cuda", 4096, 4096) == 1


def test_passes_give_the_same_result_and_report_every_image(monkeypatch):
    batch = images.comfy_image(*[images.photo(20, 24, s) for s in range(5)])
    detect = lambda x: x.mean(dim=1) / 255.0  # noqa: E731  (a per-image detector stand-in)
    done = []
    single = map_images(batch, detect, on_progress=done.append)
    assert done == [1, 2, 3, 4, 5]  # images finished so far, after each pass
    monkeypatch.setattr(run, "images_per_pass", lambda device, h, w: 2)
    done.clear()
    batched = map_images(batch, detect, on_progress=done.append)
    assert done == [2, 4, 5]
    assert torch.equal(single, batched)
    assert tuple(single.shape) == (5, 20, 24, 3)


def test_the_input_image_is_not_modified():
    batch = images.comfy_image(images.photo(12, 12, 0), images.photo(12, 12, 1))
    before = batch.clone()
    map_images(batch, lambda x: x[:, 0] / 255.0, resolution=64)
    assert torch.equal(batch, before)
