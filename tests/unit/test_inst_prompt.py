"""InST's inputs besides the file: the placeholder replaced in ComfyUI's token chunks, the picture
CLIP is shown (official and corrected, against a direct rendering of InST's code and transformers'
CLIPImageProcessor) and latent AdaIN (against InST's formula)."""

import numpy as np
import pytest
import torch
from PIL import Image

try:  # transformers 5 runs CLIPImageProcessor on torchvision when it is installed (ComfyUI's environment),
    # which resizes a level off in some pixels; InST and CLIP's own preprocessing are the PIL one.
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # transformers 4: CLIPImageProcessor is the PIL one
    from transformers import CLIPImageProcessor

from style_suite.models.adain import latent_adain
from style_suite.patches.placeholder import ChunkLayout, placeholder_token, replace_placeholder
from style_suite.preprocessors.clip_view import clip_view

START, END = 49406, 49407
STAR = 265
LAYOUT = ChunkLayout(start=START, end=END, pad=END, length=77)


def chunk(entries):
    """One 77-token chunk of (token, weight, word id) entries, as ComfyUI's tokenizer returns it."""
    padding = [(END, 1.0, 0)] * (LAYOUT.length - 2 - len(entries))
    return [(START, 1.0, 0), *entries, (END, 1.0, 0), *padding]


def words(*groups, weight=1.0, first_id=1):
    """Entries for token groups: each group gets its own word id."""
    return [(t, weight, first_id + i) for i, group in enumerate(groups) for t in group]


def test_the_layout_is_read_from_the_empty_prompt():
    assert ChunkLayout.of_empty_prompt([[(START, 1.0), (END, 1.0)] + [(END, 1.0)] * 75]) == LAYOUT
    assert placeholder_token([[(START, 1.0), (STAR, 1.0), (END, 1.0)] + [(END, 1.0)] * 74], LAYOUT) == [STAR]


def test_one_vector_changes_exactly_the_placeholder_positions():
    vector = torch.randn(1, 768)
    prompt = [chunk(words([320, 2368, STAR, 539], [1125, 2368, STAR]))]  # "a cat * in" "style of *"
    out, count = replace_placeholder(prompt, STAR, vector, LAYOUT)
    assert count == 2 and len(out) == 1 and len(out[0]) == 77
    for position, (before, after) in enumerate(zip(prompt[0], out[0])):
        if before[0] == STAR:
            assert torch.equal(after[0], vector[0])
            assert after[1] == before[1]
        else:
            assert after == before[:2], position


def test_several_vectors_take_the_placeholders_place_and_keep_its_weight():
    vectors = torch.randn(3, 768)
    prompt = [chunk(words([320, 2368], weight=1.0) + words([STAR, 539], weight=1.3, first_id=2))]
    out, count = replace_placeholder(prompt, STAR, vectors, LAYOUT)
    assert count == 1 and len(out) == 1 and len(out[0]) == 77
    assert out[0][:3] == [(START, 1.0), (320, 1.0), (2368, 1.0)]
    for i in range(3):
        assert torch.equal(out[0][3 + i][0], vectors[i]) and out[0][3 + i][1] == 1.3
    assert out[0][6] == (539, 1.3) and out[0][7] == (END, 1.0)
    assert all(entry == (END, 1.0) for entry in out[0][8:])  # two padding tokens fewer


def test_a_placeholder_that_no_longer_fits_moves_to_the_next_chunk_whole():
    """75 prompt tokens: a 3-vector placeholder at the end cannot stay in the first chunk; the group
    after it follows it; both chunks are closed and padded."""
    vectors = torch.randn(3, 768)
    first = [(400 + i, 1.0, 1) for i in range(74)] + [(STAR, 1.0, 1)]
    prompt = [chunk(first), chunk([(539, 1.0, 2), (1125, 1.0, 2)])]
    out, count = replace_placeholder(prompt, STAR, vectors, LAYOUT)
    assert count == 1 and [len(c) for c in out] == [77, 77]
    assert [t for t, _ in out[0][1:75]] == [400 + i for i in range(74)] and out[0][75:] == [(END, 1.0), (END, 1.0)]
    assert out[1][0] == (START, 1.0) and all(torch.equal(out[1][1 + i][0], vectors[i]) for i in range(3))
    assert out[1][4:6] == [(539, 1.0), (1125, 1.0)] and out[1][6] == (END, 1.0)


def test_a_long_group_is_split_at_the_chunk_end_as_comfyui_splits_it():
    vectors = torch.randn(2, 768)
    prompt = [chunk([(STAR, 1.0, 1)] + [(400 + i, 1.0, 2) for i in range(74)]), chunk([(474, 1.0, 2)])]
    out, _ = replace_placeholder(prompt, STAR, vectors, LAYOUT)
    content = [t for c in out for t, _ in c[1:-1] if not (isinstance(t, int) and t == END)]
    assert len(out) == 2 and [len(c) for c in out] == [77, 77]
    assert content[2:] == [400 + i for i in range(75)]  # nothing lost, order kept
    assert out[0][-1] == (END, 1.0) and out[0][-2] == (472, 1.0)


def test_a_prompt_without_the_placeholder_is_counted_as_such():
    prompt = [chunk(words([320, 2368]))]
    out, count = replace_placeholder(prompt, STAR, torch.randn(1, 768), LAYOUT)
    assert count == 0 and out == [[entry[:2] for entry in prompt[0]]]


# --- the picture CLIP is shown --------------------------------------------------------------------


def style_image(height, width, seed):
    """A photo-like uint8 image with some exactly black and exactly white pixels."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(1, 255, size=(height, width, 3), dtype=np.uint8)
    pixels[: height // 4, : width // 3] = 0
    pixels[-height // 5 :, -width // 4 :] = 255
    return pixels


def comfy_image(pixels):
    return torch.from_numpy(pixels).float().div(255).unsqueeze(0)


def processor_pixels(uint8_image):
    """transformers' PIL CLIPImageProcessor (openai/clip-vit-large-patch14 settings) up to normalisation."""
    processor = CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, do_rescale=False, do_normalize=False
    )
    return processor(images=uint8_image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)


def test_official_preprocessing_is_what_insts_code_shows_clip():
    """InST: PIL LANCZOS to 512x512, 2 * u / 255 - 1 as float32, .astype(np.uint8), CLIPProcessor."""
    pixels = style_image(300, 420, 0)
    resized = np.asarray(Image.fromarray(pixels).resize((512, 512), Image.LANCZOS))
    inst_input = 2.0 * (resized.astype(np.float32) / 255.0) - 1.0
    with np.errstate(invalid="ignore"):
        cast = inst_input.astype(np.uint8)
    assert set(np.unique(cast)) <= {0, 1, 255} and (cast == 255).any() and (cast == 1).any()
    expected = processor_pixels(cast)
    picture = clip_view(comfy_image(pixels), "official")
    assert picture.shape == (1, 224, 224, 3)
    np.testing.assert_array_equal(picture[0].numpy() * 255, expected)


@pytest.mark.parametrize("size", [(300, 420), (500, 260), (224, 224)])
def test_corrected_preprocessing_is_clips_own(size):
    pixels = style_image(*size, 1)
    picture = clip_view(comfy_image(pixels), "corrected")
    np.testing.assert_allclose(picture[0].numpy() * 255, processor_pixels(pixels), atol=1e-4)


def test_an_unknown_preprocessing_is_refused():
    with pytest.raises(ValueError, match="official, corrected"):
        clip_view(comfy_image(style_image(32, 32, 0)), "clean")


# --- latent AdaIN ----------------------------------------------------------------------------------


def inst_adain(content, style, eps=1e-5):
    """InST.ipynb's adain: calc_mean_std (unbiased variance + eps) per image and channel."""

    def mean_std(feat):
        n, c = feat.shape[:2]
        flat = feat.reshape(n, c, -1)
        return flat.mean(dim=2).reshape(n, c, 1, 1), (flat.var(dim=2) + eps).sqrt().reshape(n, c, 1, 1)

    content_mean, content_std = mean_std(content)
    style_mean, style_std = mean_std(style)
    return (content - content_mean) / content_std * style_std + style_mean


def test_latent_adain_is_insts_adain_at_strength_1_and_blends_below():
    content = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0)) * 3 + 1
    style = torch.randn(2, 4, 10, 6, generator=torch.Generator().manual_seed(1)) * 0.5 - 2
    torch.testing.assert_close(latent_adain(content, style), inst_adain(content, style), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(latent_adain(content, style, 0.0), content)
    torch.testing.assert_close(
        latent_adain(content, style, 0.25), 0.75 * content + 0.25 * inst_adain(content, style), atol=1e-5, rtol=1e-5
    )


def test_one_style_latent_serves_every_content_latent():
    content = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    style = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(
        latent_adain(content, style), inst_adain(content, style.expand(3, -1, -1, -1)), atol=1e-5, rtol=1e-5
    )


def test_fp16_latents_stay_finite_and_keep_their_dtype():
    content = (torch.randn(1, 4, 16, 16) * 300).half()
    out = latent_adain(content, torch.randn(1, 4, 16, 16).half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
