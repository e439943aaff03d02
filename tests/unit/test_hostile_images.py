"""Images and tensors at the edges: 1-px and 16384-px sides, extreme aspect ratios, single-value
latents. Each is processed at its own size or refused with a sentence, within a stated memory
bound, never with a shape error from inside a network. (Grey, RGBA, NaN and inf pixels, empty and
unreadable batches: tests/unit/test_images.py; through ComfyUI: tests/host/test_hostile_images.py.)"""

import numpy as np
import pytest
import torch

from fixtures import annotators, images
from fixtures.memory import in_a_fresh_process
from style_suite.models import adain
from style_suite.models.hed_network import HEDNetwork
from style_suite.models.lineart_generator import LineartGenerator
from style_suite.preprocessors import image as image_module
from style_suite.preprocessors.clip_view import clip_view
from style_suite.preprocessors.hed import contour, soft_edges
from style_suite.preprocessors.lineart import lineart
from style_suite.preprocessors.run import MAX_DETECT_PIXELS, map_images
from style_suite.preprocessors.style_patches import style_crop


def network(kind):
    net, state = (
        (HEDNetwork(), annotators.hed_state_dict())
        if kind == "hed"
        else (LineartGenerator(), annotators.lineart_state_dict())
    )
    net.load_state_dict(state)
    return net.eval()


@pytest.fixture(scope="module")
def detectors():
    hed, generator = network("hed"), network("lineart")
    return {
        "contour": lambda x: contour(hed, x),
        "soft edges": lambda x: soft_edges(hed, x),
        "lineart": lambda x: lineart(generator, x),
    }


DETECTORS = ["contour", "soft edges", "lineart"]


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("height, width", [(1, 1), (1, 9), (7, 3), (15, 15), (4, 40), (16384, 16), (3, 16384)])
def test_tiny_and_long_images_come_back_at_their_size(detectors, detector, height, width):
    """HED pools four times (sides under 16 px had no pixels left) and lineart's residual blocks pad
    by reflection (4 px and under failed): both now run on any size."""
    batch = images.comfy_image(images.photo(height, width, seed=height + width))
    out = map_images(batch, detectors[detector])
    assert out.shape == (1, height, width, 3)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("detector, smallest", [("contour", 16), ("soft edges", 16), ("lineart", 5)])
def test_a_one_pixel_image_is_the_corner_of_the_smallest_image_the_network_takes(detectors, detector, smallest):
    """Edge replication pads a uniform image with itself: a 1x1 image's map is the top-left pixel of
    the map of a same-coloured image at the smallest size the network takes (16 px: HED's four
    poolings; 5 px: lineart's reflection padding after two stride-2 convolutions)."""
    colour = torch.tensor([0.2, 0.6, 0.4])
    one = map_images(colour.expand(1, 1, 1, 3).clone(), detectors[detector])
    square = map_images(colour.expand(1, smallest, smallest, 3).clone(), detectors[detector])
    assert torch.equal(one[0, 0, 0], square[0, 0, 0])
    assert not torch.equal(square[0, 0, 0], square[0, smallest // 2, smallest // 2]) or detector == "contour"


@pytest.mark.parametrize(
    "height, width, resolution", [(16384, 16384, 0), (8192, 4096, 0), (16384, 64, 512), (1, 16384, 64)]
)
def test_images_over_the_pixel_limit_are_refused_before_any_work(height, width, resolution):
    """A 16384x16384 input (3 GiB as float32; here a broadcast view that costs nothing) or an extreme
    aspect ratio at a detect resolution (16384x64 at 512 would be 512x131072) is refused with what to
    do, and the refusal allocates nothing of that size."""
    grown = float(
        in_a_fresh_process(f"""
        import torch
        from style_suite.preprocessors.run import map_images
        batch = torch.zeros(1, 1, 1, 3).expand(1, {height}, {width}, 3)
        before = grown_mib()  # after the imports (cv2 alone is ~100 MiB)
        try:
            map_images(batch, lambda x: x[:, 0], resolution={resolution})
        except ValueError as error:
            assert "over the limit of 16.8" in str(error) and "set 'resolution'" in str(error), error
        else:
            raise AssertionError("not refused")
        print(grown_mib() - before)
    """)
    )
    assert grown < 100, f"refusing a {width}x{height} image took {grown:.0f} MiB"


def test_an_image_at_the_pixel_limit_is_processed_one_image_at_a_time():
    """At the limit (4096x4096, a batch of 4) the detector runs, and peak memory beyond the batch
    itself is bounded by one image's working copies, not four."""
    assert MAX_DETECT_PIXELS == 4096 * 4096
    grown = float(
        in_a_fresh_process("""
        import torch
        from style_suite.preprocessors.run import map_images
        batch = torch.rand(4, 4096, 4096, 3)  # 768 MiB
        before = grown_mib()
        out = map_images(batch, lambda x: x[:, 0] / 255.0)
        assert out.shape == batch.shape
        del out
        print(grown_mib() - before)
    """)
    )
    # one image: float copy and levels (2 x 192 MiB), uint8 (48), its map and output (4 x 64) and
    # the batch output (768): about 1.4 GiB; quantising the whole batch first would add 1.2 GiB
    assert grown < 1600, f"mapping 4 images of 16 megapixels grew peak memory by {grown:.0f} MiB"


@pytest.mark.parametrize("height, width", [(1, 16384), (16384, 1), (1, 1), (3, 2000)])
def test_style_crops_of_extreme_shapes_stay_small(height, width):
    """Resizing a 1x16384 image to a 512 px short side would build an 8-gigapixel picture (24 GB);
    only the centre crop's part is resampled."""
    grown = float(
        in_a_fresh_process(f"""
        import torch
        from style_suite.preprocessors.style_patches import style_crop
        from style_suite.preprocessors.clip_view import clip_view
        image = torch.rand(1, {height}, {width}, 3)
        before = grown_mib()
        crop = style_crop(image)
        assert crop.shape == (1, 3, 512, 512) and torch.isfinite(crop).all()
        assert clip_view(image, "corrected").shape == (1, 224, 224, 3)
        print(grown_mib() - before)
    """)
    )
    assert grown < 200, f"a {width}x{height} style image took {grown:.0f} MiB"


def test_resampling_only_the_crop_gives_the_whole_resize_to_within_a_level(monkeypatch):
    """The crop-only path (forced here for ordinary sizes) against resizing the whole picture: the
    references' own steps, which ordinary sizes still take."""
    rgb = images.photo(300, 451, seed=3)
    whole = style_crop(images.comfy_image(rgb))
    whole_clip = clip_view(images.comfy_image(rgb), "corrected")
    monkeypatch.setattr(image_module, "MAX_RESIZED_PIXELS", 0)
    cropped = style_crop(images.comfy_image(rgb))
    cropped_clip = clip_view(images.comfy_image(rgb), "corrected")
    for ours, reference, level in [(cropped, whole, 2 / 255), (cropped_clip, whole_clip, 1 / 255)]:
        difference = (ours - reference).abs()
        assert difference.max() <= level + 1e-6
        assert (difference > 1e-6).float().mean() < 0.01  # rounding, in rare pixels


def test_latent_adain_of_a_single_value_latent_is_the_style_mean_not_nan():
    """A 1x1 latent (an 8 px image) has no unbiased variance: it takes the style's mean."""
    style = torch.randn(1, 4, 6, 5)
    for content in (torch.randn(2, 4, 1, 1), torch.randn(1, 4, 1, 1).half()):
        out = adain.latent_adain(content, style)
        assert torch.isfinite(out).all() and out.dtype == content.dtype
        torch.testing.assert_close(out.float(), style.mean(dim=(2, 3), keepdim=True).expand_as(out), atol=2e-3, rtol=0)
    single_style = adain.latent_adain(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 1, 1))
    assert torch.isfinite(single_style).all()
    # larger latents keep the published unbiased statistics
    content = torch.randn(1, 4, 3, 3)
    expected = (content - content.mean((2, 3), keepdim=True)) / (content.var((2, 3), keepdim=True) + 1e-5).sqrt()
    expected = expected * (style.var((2, 3), keepdim=True) + 1e-5).sqrt() + style.mean((2, 3), keepdim=True)
    torch.testing.assert_close(adain.latent_adain(content, style), expected)


def test_nan_pixels_in_a_style_image_do_not_reach_the_crop():
    rgb = torch.from_numpy(np.full((1, 64, 64, 3), 0.5, np.float32))
    rgb[0, :8] = float("nan")
    rgb[0, 8:16] = float("inf")
    assert torch.isfinite(style_crop(rgb)).all()
