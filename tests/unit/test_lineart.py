"""Lineart against the published LineartDetector steps, and its polarity switch."""

import numpy as np
import pytest
import torch
from fixtures import annotators, images, reference

from style_suite.preprocessors.lineart import LineartGenerator, lineart
from style_suite.preprocessors.run import map_images


@pytest.fixture(scope="module")
def generator():
    sd = annotators.lineart_state_dict()
    net = LineartGenerator()
    net.load_state_dict(sd)
    return sd, net.eval()


def test_lineart_is_exact_with_the_published_detector_and_keeps_its_polarity(generator):
    sd, net = generator
    photos = [images.photo(64, 96, seed) for seed in (3, 4)]
    result = map_images(images.comfy_image(*photos), lambda x: lineart(net, x))
    levels = (result[..., 0] * 255).round().to(torch.uint8).numpy()
    for b, photo in enumerate(photos):
        np.testing.assert_array_equal(levels[b], reference.lineart_map(sd, photo))


def test_invert_gives_white_lines_on_black(generator):
    _, net = generator
    batch = images.comfy_image(images.photo(32, 48, 1))
    plain = map_images(batch, lambda x: lineart(net, x))
    inverted = map_images(batch, lambda x: lineart(net, x, invert=True))
    torch.testing.assert_close(inverted, 1 - plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("height,width,resolution", [(61, 90, 0), (50, 70, 64), (33, 35, 128)])
def test_sizes_that_are_not_multiples_of_4_or_64_come_back_at_the_input_size(generator, height, width, resolution):
    _, net = generator
    result = map_images(images.comfy_image(images.photo(height, width, 2)), lambda x: lineart(net, x), resolution=resolution)
    assert tuple(result.shape) == (1, height, width, 3)
    assert 0 <= result.min() and result.max() <= 1
