"""StyleShot Contour and HED soft edges against numpy/cv2 renderings of the published steps."""

import cv2
import numpy as np
import pytest
import torch

from fixtures import annotators, images, reference
from style_suite.models.hed_network import HEDNetwork
from style_suite.preprocessors.hed import contour, contour_levels, safe_step, soft_edge_levels, soft_edges
from style_suite.preprocessors.run import map_images


@pytest.fixture(scope="module")
def hed():
    sd = annotators.hed_state_dict()
    net = HEDNetwork()
    net.load_state_dict(sd)
    return sd, net.eval()


def as_uint8(image_batch):
    return (image_batch[..., 0] * 255).round().to(torch.uint8).numpy()


@pytest.mark.parametrize(
    "threshold,size,iterations",
    [(0, 3, 1), (127, 3, 1), (200, 3, 1), (254, 5, 2), (255, 3, 1), (200, 2, 1), (200, 3, 0)],
)
def test_contour_post_processing_equals_the_published_numpy_steps(threshold, size, iterations):
    levels = np.random.default_rng(threshold).integers(0, 256, (3, 37, 29)).astype(np.uint8)
    levels[0, :4, :4] = threshold  # a value equal to the threshold is dropped (strict >)
    ours = contour_levels(levels, threshold, size, iterations)
    for b in range(3):
        edge = levels[b].copy()
        edge[edge > threshold] = 255
        edge[edge < 255] = 0
        np.testing.assert_array_equal(ours[b], cv2.dilate(edge, np.ones((size, size), np.uint8), iterations=iterations))
    if threshold == 255:  # only saturated edges survive, as in the published code
        assert set(np.unique(levels[ours == 255])) >= {255} and ours.max() == 255


def test_soft_levels_floor_the_float64_sigmoid_of_the_mean_logit():
    # Constant side outputs: the upsampling is exact, so the level is floor(255 * sigmoid(mean)).
    logits = [1.0, 2.0, 0.5, -1.0, 1.0]
    projections = [torch.full((1, 1, 16 // 2**i, 16 // 2**i), v) for i, v in enumerate(logits)]
    levels = soft_edge_levels(projections)
    expected = int(255 / (1 + np.exp(-np.mean(logits))))
    assert levels.dtype == np.uint8 and (levels == expected).all()


def test_safe_step_has_three_levels_at_the_published_cut_points():
    edge = np.array([0.3, 0.3334, 0.6666, 0.6667, 1.0])
    levels = (safe_step(edge) * 255.0).clip(0, 255).astype(np.uint8)
    assert levels.tolist() == [0, 127, 127, 255, 255]


@pytest.mark.parametrize("height,width", [(64, 96), (75, 101), (50, 50)])
def test_contour_is_pixel_exact_with_styleshot_at_native_size(hed, height, width):
    sd, net = hed
    photos = [images.photo(height, width, seed) for seed in (1, 2)]
    result = map_images(images.comfy_image(*photos), lambda x: contour(net, x), binary=True)
    assert tuple(result.shape) == (2, height, width, 3)
    assert torch.equal(result[..., 0], result[..., 2])
    ours = as_uint8(result)
    for b, photo in enumerate(photos):
        expected = reference.soft_hed_contour(sd, photo)
        assert 0.02 < (expected > 0).mean() < 0.98  # the threshold really cut something
        np.testing.assert_array_equal(ours[b], expected)


def test_contour_at_a_detect_resolution_follows_the_published_resize(hed):
    sd, net = hed
    photo = images.photo(72, 100, 5)
    result = map_images(images.comfy_image(photo), lambda x: contour(net, x), resolution=128, binary=True)
    assert tuple(result.shape) == (1, 72, 100, 3)
    small = reference.resize_image(photo, 128)
    assert small.shape[:2] == (128, 192)
    expected = reference.soft_hed_contour(sd, small)
    expected = cv2.resize(expected, (100, 72), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(as_uint8(result)[0], expected)
    assert set(np.unique(as_uint8(result))) <= {0, 255}


@pytest.mark.parametrize("safe", [False, True])
def test_soft_edges_equal_the_published_hed(hed, safe):
    sd, net = hed
    photo = images.photo(56, 84, 7)
    result = map_images(images.comfy_image(photo), lambda x: soft_edges(net, x, safe=safe))
    expected = reference.hed_soft(sd, photo, safe=safe)
    np.testing.assert_array_equal(as_uint8(result)[0], expected)
    if safe:
        assert set(np.unique(as_uint8(result))) <= {0, 127, 255}


def test_fp16_compute_agrees_with_fp32(hed):
    _, net = hed
    batch = images.comfy_image(images.photo(48, 64, 9))
    full = map_images(batch, lambda x: contour(net, x), binary=True)
    half_net = HEDNetwork().eval()
    half_net.load_state_dict(net.state_dict())
    half_net = half_net.half()
    half = map_images(batch, lambda x: contour(half_net, x), binary=True, dtype=torch.float16)
    assert half.dtype == torch.float32
    assert (full != half).float().mean() < 0.02  # fp16 may flip pixels right at the threshold
