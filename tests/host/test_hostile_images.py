"""Images, masks and latents at the edges, through the pack's nodes inside a real ComfyUI (in this
process, CPU, the full-size random SD1.5 UNet): latents of 8x8 and below (one-token attention
layers), masks and content maps of any size, style images of any shape or with bad pixels, empty
and mismatched batches. Each either works (finite, and the feature still acts) or is refused with a
sentence; none fails inside sampling with a shape error. (The preprocessors' and crops' own edge
cases: tests/unit/test_hostile_images.py.)"""

import pytest
import torch

from fixtures import images
from fixtures.sampling import ksample, prompt, relative
from fixtures.style_aligned_nodes import align
from fixtures.styleshot_nodes import apply, apply_content, binary_map, encode

SMALL_LATENTS = [(8, 8), (1, 1), (3, 5)]


def latent(rows, size):
    return {"samples": torch.zeros(rows, 4, *size)}


@pytest.fixture(scope="module")
def conds():
    return prompt(1), prompt(2)


@pytest.fixture(scope="module")
def styled(pack, sd15, styleshot, style):
    return apply(pack, sd15, styleshot, style)


@pytest.mark.parametrize("size", SMALL_LATENTS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_small_latents_sample_finite_with_every_feature_acting(
    comfy, pack, sd15, styleshot, style, styled, conds, size
):
    """At 8x8 the middle block has one token; at 1x1 every block does."""
    plain = ksample(comfy, sd15, *conds, latent(2, size))
    with_style = ksample(comfy, styled, *conds, latent(2, size))
    positive, negative = apply_content(pack, *conds, styleshot, style, binary_map(3, 8 * size[0], 8 * size[1]))
    with_content = ksample(comfy, styled, positive, negative, latent(2, size))
    aligned = ksample(comfy, align(pack, sd15, shift=0.5), *conds, latent(2, size))
    for out in (with_style, with_content, aligned):
        assert out.shape == plain.shape and torch.isfinite(out).all()
    assert relative(with_style, plain) > 1e-3 and relative(with_content, with_style) > 1e-3
    assert relative(aligned[0], plain[0]) < 1e-4 and relative(aligned[1], plain[1]) > 1e-3  # row 0 is the reference


def test_masks_of_any_size_are_fitted_to_each_layer(comfy, pack, sd15, styleshot, style, styled, conds):
    x = latent(2, (8, 8))
    plain, full = ksample(comfy, sd15, *conds, x), ksample(comfy, styled, *conds, x)
    # all ones: the unmasked style; all zeros: no style at all, whatever the mask's size
    assert torch.equal(ksample(comfy, apply(pack, sd15, styleshot, style, mask=torch.ones(1, 1)), *conds, x), full)
    assert torch.equal(ksample(comfy, apply(pack, sd15, styleshot, style, mask=torch.zeros(7, 3)), *conds, x), plain)
    half = torch.zeros(2, 3, 97)
    half[:, :, :48] = 1
    out = ksample(comfy, apply(pack, sd15, styleshot, style, mask=half), *conds, x)
    assert torch.isfinite(out).all() and relative(out, plain) > 1e-3 and relative(out, full) > 1e-3
    with pytest.raises(
        ValueError,
        match="the attention mask has 3 masks but the latent batch has 2 images: use 1 mask or one per latent",
    ):
        ksample(comfy, apply(pack, sd15, styleshot, style, mask=torch.ones(3, 8, 8)), *conds, x)
    with pytest.raises(
        ValueError,
        match=r"attn_mask must be a MASK shaped \[height, width\] or \[batch, height, width\], got \(1, 0, 8\)",
    ):
        apply(pack, sd15, styleshot, style, mask=torch.ones(1, 0, 8))


def test_content_maps_of_any_size_are_fitted_to_the_latent(comfy, pack, styleshot, style, styled, conds):
    for content_map in (binary_map(4, 1, 1), binary_map(5, 640, 24), torch.full((1, 64, 64, 4), float("nan"))):
        positive, negative = apply_content(pack, *conds, styleshot, style, content_map)
        assert torch.isfinite(ksample(comfy, styled, positive, negative, latent(1, (8, 8)))).all()
    with pytest.raises(ValueError, match="the image batch is empty"):
        apply_content(pack, *conds, styleshot, style, torch.zeros(0, 64, 64, 3))


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (1, 1, 300, 3), (1, 300, 2, 1), (1, 40, 40, 4)], ids=str)
def test_style_images_of_any_shape_give_finite_tokens(pack, styleshot, shape):
    image = torch.rand(*shape, generator=torch.Generator().manual_seed(shape[2]))
    image[0, 0, 0, 0] = float("nan")
    image[0, -1, -1, -1] = float("inf")
    tokens = encode(pack, styleshot, image)
    assert tokens.cond.shape == (1, 6, 768) and torch.isfinite(tokens.cond).all()


def test_an_empty_style_batch_is_refused(pack, styleshot):
    with pytest.raises(ValueError, match="the image batch is empty: connect a node that outputs at least one image"):
        encode(pack, styleshot, torch.zeros(0, 64, 64, 3))


def test_preprocessor_nodes_on_one_pixel_images(comfy):
    image = images.comfy_image(images.photo(1, 1, 7))
    for key, model, options in [
        ("StyleSuiteStyleShotContour", "ControlNetHED.pth", (200, 3, 1, 0)),
        ("StyleSuiteHEDSoftEdges", "ControlNetHED.pth", (False, 0)),
        ("StyleSuiteLineart", "sk_model.pth", (False, 0)),
    ]:
        (out,) = comfy[1].NODE_CLASS_MAPPINGS[key]().detect(image, model, *options)
        assert out.shape == (1, 1, 1, 3) and torch.isfinite(out).all()


def test_latent_adain_on_single_value_and_empty_latents(pack):
    adain = pack.NODE_CLASS_MAPPINGS["StyleSuiteInSTLatentAdaIN"]()
    style = torch.randn(1, 4, 6, 6)
    (out,) = adain.adain({"samples": torch.randn(2, 4, 1, 1)}, {"samples": style}, 1.0)
    torch.testing.assert_close(out["samples"], style.mean((2, 3), keepdim=True).expand(2, -1, -1, -1))
    for content, style in [(torch.zeros(1, 4, 0, 8), style), (torch.randn(1, 4, 8, 8), torch.zeros(1, 4, 8, 0))]:
        with pytest.raises(ValueError, match="have no pixels"):
            adain.adain({"samples": content}, {"samples": style}, 1.0)
    with pytest.raises(ValueError, match=r"give one style latent or one per content latent \(2\), got 0"):
        adain.adain({"samples": torch.randn(2, 4, 8, 8)}, {"samples": torch.zeros(0, 4, 8, 8)}, 1.0)
