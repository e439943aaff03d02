"""Lineart against the published LineartDetector steps, and its polarity switch."""

import numpy as np
import pytest
import torch

from fixtures import annotators, images, reference
from style_suite.models.lineart_generator import LineartGenerator
from style_suite.preprocessors.lineart import lineart
from style_suite.preprocessors.run import map_images


@pytest.fixture(scope="module")
def generator():
    sd = annotators.lineart_state_dict()
    net = LineartGenerator()
    net.load_state_dict(sd)
    return sd, net.eval()


@pytest.fixture(scope="module", params=["fine", "coarse"])
def both_generators(request):
    """sk_model.pth and sk_model2.pth share a layout; the fixture files use seeds 1 and 2."""
    sd = annotators.lineart_state_dict(seed={"fine": 1, "coarse": 2}[request.param])
    net = LineartGenerator()
    net.load_state_dict(sd)
    return sd, net.eval()


def published_levels(sd, photo, invert):
    """LineartDetector's map (rounded up to a multiple of 4 by the generator) cropped to the photo,
    inverted as ControlNet's preprocessors do (255 - map) for white lines on black."""
    levels = reference.lineart_map(sd, photo)[: photo.shape[0], : photo.shape[1]]
    return 255 - levels if invert else levels


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("height,width", [(64, 96), (61, 90), (37, 53), (50, 70), (5, 11)])
def test_lineart_is_exact_with_the_published_detector_at_every_size(both_generators, height, width, invert):
    """Sides that are not multiples of 4 included: the generator sees the image as it is."""
    sd, net = both_generators
    photos = [images.photo(height, width, seed) for seed in (3, 4)]
    result = map_images(images.comfy_image(*photos), lambda x: lineart(net, x, invert=invert))
    levels = (result[..., 0] * 255).round().to(torch.uint8).numpy()
    for b, photo in enumerate(photos):
        np.testing.assert_array_equal(levels[b], published_levels(sd, photo, invert))


def test_the_comparison_catches_a_map_made_on_a_padded_image(generator):
    """Companion: padding a 61x90 photo to 64x92 before the generator (the old way) shifts the
    instance-norm statistics, and the comparison above sees it far from the padded border."""
    sd, _ = generator
    photo = images.photo(61, 90, 3)
    padded = np.pad(photo, ((0, 3), (0, 2), (0, 0)), mode="edge")
    inner = (slice(0, 40), slice(0, 60))
    changed = reference.lineart_map(sd, padded)[inner] != published_levels(sd, photo, False)[inner]
    assert changed.sum() > 0.05 * changed.size


def test_invert_gives_white_lines_on_black(generator):
    _, net = generator
    batch = images.comfy_image(images.photo(32, 48, 1))
    plain = map_images(batch, lambda x: lineart(net, x))
    inverted = map_images(batch, lambda x: lineart(net, x, invert=True))
    torch.testing.assert_close(inverted, 1 - plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("height,width,resolution", [(61, 90, 0), (50, 70, 64), (33, 35, 128)])
def test_sizes_that_are_not_multiples_of_4_or_64_come_back_at_the_input_size(generator, height, width, resolution):
    _, net = generator
    result = map_images(
        images.comfy_image(images.photo(height, width, 2)), lambda x: lineart(net, x), resolution=resolution
    )
    assert tuple(result.shape) == (1, height, width, 3)
    assert 0 <= result.min() and result.max() <= 1
