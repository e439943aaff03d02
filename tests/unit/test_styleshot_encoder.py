"""StyleShot's style-aware encoder, patch tree, style crop and style tokens (docs/design/styleshot.md
section 1) against independent references: transformers' CLIPVisionModelWithProjection for the
ViT-H blocks, a functional rendering of the CNN experts written from the spec tables, PIL for the
crop and a numpy rendering of the published patch recursion.

The encoder runs on real-shaped random weights (fixtures.styleshot, ~767M parameters) in fp32."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from fixtures import styleshot
from style_suite.loaders.styleshot import load_adapter, load_encoder
from style_suite.preprocessors.style_patches import patch_tree, style_crop

HIDDEN = 1280
# (in, out, downsample first) of each ResnetBlock, per expert: docs/design/styleshot.md 1.3's table.
SPEC_EXPERTS = (
    ((320, 320, False), (320, 640, False), (640, 640, True), (640, 640, True), (640, 1280, True), (1280, 1280, False)),
    ((320, 320, False), (320, 640, False), (640, 640, True), (640, 1280, True), (1280, 1280, False)),
    ((320, 320, False), (320, 640, False), (640, 1280, True), (1280, 1280, False)),
)
GROUP_SIZES = (8, 16, 32)
PATCH_SIDES = (128, 64, 32)


@pytest.fixture(scope="module")
def file_tensors(encoder_file):
    """The file as torch reads it (memory-mapped), independently of the pack's loader."""
    return torch.load(encoder_file, map_location="cpu", weights_only=True, mmap=True)


@pytest.fixture(scope="module")
def encoder(encoder_file):
    return load_encoder(encoder_file)


@pytest.fixture(scope="module")
def clip(file_tensors):
    """transformers' ViT-H/14 vision tower holding the file's `image_encoder.` tensors in fp32."""
    config = CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=1024,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        attn_implementation="eager",
    )
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(config)
    prefix = "image_encoder."
    weights = {k[len(prefix) :]: v.float() for k, v in file_tensors.items() if k.startswith(prefix)}
    result = model.load_state_dict(weights, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def adapter_file(tmp_path_factory):
    return str(styleshot.write_adapter(tmp_path_factory.mktemp("ip") / "ip.bin"))


@pytest.fixture(scope="module")
def adapter(adapter_file):
    return load_adapter(adapter_file)


# ---------------------------------------------------------------- reference encoder (from the spec)


def reference_expert(sd, index, patches):
    """Expert `index` on [N, 3, S, S]: PixelUnshuffle(8), conv_in, ResnetBlocks, AvgPool2d(2),
    flatten, adapter; with the state dict's tensors."""

    def p(name):
        return sd[f"cnn.{index}.{name}"].float()

    x = F.conv2d(F.pixel_unshuffle(patches, 8), p("conv_in.weight"), p("conv_in.bias"), padding=1)
    for j, (cin, cout, down) in enumerate(SPEC_EXPERTS[index]):
        if down:
            x = F.avg_pool2d(x, 2, 2)
        if cin != cout:
            x = F.conv2d(x, p(f"body.{j}.in_conv.weight"), p(f"body.{j}.in_conv.bias"))
        h = F.relu(F.conv2d(x, p(f"body.{j}.block1.weight"), p(f"body.{j}.block1.bias"), padding=1))
        x = x + F.conv2d(h, p(f"body.{j}.block2.weight"), p(f"body.{j}.block2.bias"))
    assert x.shape[1:] == (HIDDEN, 2, 2)
    return F.linear(F.avg_pool2d(x, 2, 2).flatten(1), p("adapter.weight"), p("adapter.bias"))


def reference_encode(sd, clip, high, middle, low):
    batch = high.shape[0] // GROUP_SIZES[0]
    tokens = []
    for i, patches in enumerate((high, middle, low)):
        tokens.append(sd[f"style_embeddings.{i}"].float().expand(batch, 1, HIDDEN))
        tokens.append(reference_expert(sd, i, patches).reshape(batch, GROUP_SIZES[i], HIDDEN))
    tokens = torch.cat(tokens, dim=1)
    assert tokens.shape[1] == 59
    tokens = tokens + sd["position_embedding.weight"].float()
    vision = clip.vision_model
    hidden = vision.encoder(inputs_embeds=vision.pre_layrnorm(tokens)).last_hidden_state
    return clip.visual_projection(vision.post_layernorm(hidden[:, [0, 9, 26]]))


def random_patches(batch, seed):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(batch * n, 3, s, s, generator=generator) * 2 - 1 for n, s in zip(GROUP_SIZES, PATCH_SIDES))


def test_encoder_weights_are_the_file_values_in_fp32(encoder, file_tensors):
    state = encoder.state_dict()
    unused = {k for k in file_tensors if k.startswith("image_encoder.vision_model.embeddings.")}
    assert len(unused) == 3 and set(state) == set(file_tensors) - unused
    assert {t.dtype for t in state.values()} == {torch.float32}
    assert file_tensors["image_encoder.visual_projection.weight"].dtype == torch.float16  # as published
    for key, value in state.items():
        assert torch.equal(value, file_tensors[key].float()), key
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


@pytest.fixture(scope="module")
def forward(encoder, file_tensors, clip):
    """Both encoders on a batch of two style images, image-major: random patches, and the patch
    tree of a grey (blank) style image."""
    high, middle, low = random_patches(1, seed=0)
    blank = patch_tree(style_crop(torch.full((1, 64, 64, 3), 0.5)))  # uniform grey
    assert all(float(g.max() - g.min()) == 0 for g in blank)
    groups = [torch.cat(pair) for pair in zip((high, middle, low), blank)]
    with torch.no_grad():
        return encoder(*groups), reference_encode(file_tensors, clip, *groups)


def test_encoder_forward_matches_transformers_clip_and_spec_experts(forward):
    ours, reference = forward
    assert ours.shape == (2, 3, 1024) and ours.dtype == torch.float32
    assert reference.abs().max() > 0.1 and torch.isfinite(reference).all()
    scale = reference.abs().max().item()
    # fp32 agreement is ~1e-6 of the largest value; tanh-GELU instead of erf-GELU would be off by ~1.5e-4
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=2e-5 * scale)
    # the two images' embeddings differ (the reference reads the groups image-major) and each
    # scale's token is its own
    assert (ours[0] - ours[1]).abs().max() > 1e-2 * scale
    assert (ours[0, 0] - ours[0, 1]).abs().max() > 1e-2 * scale


# ---------------------------------------------------------------- patch tree


def crop_4_boxes(left, top, width):
    """crop_4_patches' PIL boxes as (left, top) corners, order TL, BL, TR, BR; side int(width/2)."""
    side = int(width / 2)
    return [(left, top), (left, top + side), (left + side, top), (left + side, top + side)], side


def published_boxes():
    """pre_processing's recursion as (left, top, side) boxes on the 512 crop."""
    high, middle, low = [], [], []
    quarters, s256 = crop_4_boxes(0, 0, 512)
    for corner in quarters:
        blocks, s128 = crop_4_boxes(*corner, s256)
        high += [(*blocks[0], s128), (*blocks[3], s128)]
        for block in (blocks[1], blocks[2]):
            smaller, s64 = crop_4_boxes(*block, s128)
            middle += [(*smaller[0], s64), (*smaller[3], s64)]
            for small in (smaller[1], smaller[2]):
                smallest, s32 = crop_4_boxes(*small, s64)
                low += [(*smallest[0], s32), (*smallest[3], s32)]
    return high, middle, low


def numpy_patches(crop, boxes):
    """crop [3, 512, 512] numpy -> [n, 3, s, s] cut at `boxes`."""
    return np.stack([crop[:, top : top + side, left : left + side] for left, top, side in boxes])


def test_published_boxes_hand_checked():
    high, middle, low = published_boxes()
    assert (len(high), len(middle), len(low)) == (8, 16, 32)
    assert high[:2] == [(0, 0, 128), (128, 128, 128)]  # TL and BR of the top-left 256 quarter
    assert high[2:4] == [(0, 256, 128), (128, 384, 128)]  # the bottom-left quarter comes second
    assert middle[:2] == [(0, 128, 64), (64, 192, 64)]  # inside the BL 128 block of the first quarter
    assert low[:2] == [(0, 192, 32), (32, 224, 32)]  # inside that block's BL 64 block


def test_patch_tree_matches_the_published_recursion():
    crops = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(0)) * 2 - 1
    groups = patch_tree(crops)
    boxes = published_boxes()
    for group, group_boxes, n, side in zip(groups, boxes, GROUP_SIZES, PATCH_SIDES):
        assert group.shape == (2 * n, 3, side, side)
        expected = np.concatenate([numpy_patches(crops[b].numpy(), group_boxes) for b in range(2)])  # image-major
        np.testing.assert_array_equal(group.numpy(), expected)


def test_patch_tree_covers_exactly_seven_eighths_without_overlap():
    index = torch.arange(3 * 512 * 512, dtype=torch.float32).reshape(1, 3, 512, 512)  # exact in fp32
    values = torch.cat([g.reshape(-1) for g in patch_tree(index)]).long()
    assert values.numel() == torch.unique(values).numel()  # no pixel is used twice
    seen = torch.zeros(3 * 512 * 512, dtype=torch.bool)
    seen[values] = True
    assert seen.sum().item() == 3 * 512 * 512 * 7 // 8
    # the unseen pixels are the 32 off-diagonal 32-px blocks: every unseen pixel's 32-block is fully unseen
    unseen = ~seen.reshape(3, 512, 512)[0]
    blocks = unseen.reshape(16, 32, 16, 32).permute(0, 2, 1, 3).reshape(256, -1)
    assert set(blocks.sum(1).tolist()) == {0, 1024} and (blocks.sum(1) == 1024).sum() == 32


def test_patch_tree_shuffles_within_each_image_and_group_by_seed():
    crops = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(3))
    plain = patch_tree(crops)
    first = patch_tree(crops, torch.Generator().manual_seed(7))
    again = patch_tree(crops, torch.Generator().manual_seed(7))
    other = patch_tree(crops, torch.Generator().manual_seed(8))
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(first, other))
    for shuffled, unshuffled, n in zip(first, plain, GROUP_SIZES):
        assert shuffled.shape == unshuffled.shape
        for image in range(2):
            mine = shuffled[image * n : (image + 1) * n].reshape(n, -1)
            source = unshuffled[image * n : (image + 1) * n].reshape(n, -1)
            # each shuffled patch is exactly one of this image's own patches, each used once
            match = (mine[:, None, :] == source[None, :, :]).all(-1)
            assert (match.sum(1) == 1).all()
            perm = match.float().argmax(1)
            assert sorted(perm.tolist()) == list(range(n))
    assert not torch.equal(first[2], plain[2])  # the 32-patch group is not left in order


# ---------------------------------------------------------------- style crop (StyleProcessor)


def pil_style_crop(rgb):
    """torchvision's Resize(512, BILINEAR) + CenterCrop(512) on a PIL image, then ToTensor and
    Normalize(0.5, 0.5), written with PIL and numpy only."""
    image = Image.fromarray(rgb)
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(512 * long / short)
    new_w, new_h = (512, new_long) if width <= height else (new_long, 512)
    image = image.resize((new_w, new_h), Image.BILINEAR)
    top = int(round((new_h - 512) / 2.0))
    left = int(round((new_w - 512) / 2.0))
    image = image.crop((left, top, left + 512, top + 512)).convert("RGB")
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (pixels - 0.5) / 0.5


def comfy_image(uint8):
    """A ComfyUI IMAGE [1, H, W, C] from an 8-bit [H, W, C] array."""
    return torch.from_numpy(uint8).float().div(255.0)[None]


def noise(height, width, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


@pytest.mark.parametrize(
    "height, width",
    [
        (300, 451),  # landscape: long side 769, (769-512)/2 = 128.5 rounds to 128 (Python's round)
        (517, 333),  # portrait: long side int(794.9) = 794
        (200, 130),  # smaller than 512: upscaled
        (512, 512),  # exactly 512: untouched
        (512, 700),  # short side already 512: width stays, crop only
    ],
)
def test_style_crop_matches_pil_rendering(height, width):
    rgb = noise(height, width, seed=height + width)
    ours = style_crop(comfy_image(rgb))
    assert ours.shape == (1, 3, 512, 512) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours[0].numpy(), pil_style_crop(rgb), rtol=0, atol=1e-6)


def test_style_crop_of_a_512_square_is_the_image_in_minus_one_to_one():
    rgb = noise(512, 512, seed=4)
    ours = style_crop(comfy_image(rgb))[0]
    np.testing.assert_allclose(ours.numpy(), rgb.transpose(2, 0, 1) / 127.5 - 1.0, atol=1e-6)


def test_style_crop_batch_and_channels():
    rgb = np.stack([noise(300, 451, seed=1), noise(300, 451, seed=2)])
    ours = style_crop(torch.from_numpy(rgb).float() / 255.0)
    assert ours.shape == (2, 3, 512, 512)
    for b in range(2):
        np.testing.assert_allclose(ours[b].numpy(), pil_style_crop(rgb[b]), atol=1e-6)
    # grey: 1 channel in, 3 identical channels out, as PIL's L -> RGB
    grey = noise(300, 451, channels=1, seed=5)
    out = style_crop(comfy_image(grey))
    assert out.shape == (1, 3, 512, 512)
    np.testing.assert_allclose(out[0].numpy(), pil_style_crop(np.repeat(grey, 3, axis=2)), atol=1e-6)
    grey_pil = Image.fromarray(grey[..., 0]).resize((int(512 * 451 / 300), 512), Image.BILINEAR)
    np.testing.assert_allclose(out[0, 0].numpy(), np.asarray(grey_pil, np.float32)[:, 128:640] / 127.5 - 1, atol=1e-6)
    # RGBA: 3 channels out, alpha dropped (opaque here, where every reading of the reference agrees)
    rgba = np.concatenate([noise(300, 451, seed=6), np.full((300, 451, 1), 255, np.uint8)], axis=2)
    out = style_crop(comfy_image(rgba))
    assert out.shape == (1, 3, 512, 512)
    np.testing.assert_allclose(out[0].numpy(), pil_style_crop(rgba[..., :3]), atol=1e-6)
    np.testing.assert_allclose(out[0].numpy(), pil_style_crop(rgba), atol=1e-6)


# ---------------------------------------------------------------- style tokens


def layer_norm_by_hand(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def projection_by_hand(sd, i, embed):
    p = f"style_image_proj_modules.{i}."
    tokens = (embed @ sd[p + "proj.weight"].T + sd[p + "proj.bias"]).reshape(-1, 2, 768)
    return layer_norm_by_hand(tokens, sd[p + "norm.weight"], sd[p + "norm.bias"])


def test_uncond_tokens_are_the_layer_normed_projection_bias(adapter, adapter_file):
    sd = torch.load(adapter_file, weights_only=True)
    uncond = adapter.uncond_tokens()
    assert uncond.shape == (1, 6, 768)
    for i in range(3):
        p = f"style_image_proj_modules.{i}."
        expected = layer_norm_by_hand(sd[p + "proj.bias"].reshape(2, 768), sd[p + "norm.weight"], sd[p + "norm.bias"])
        torch.testing.assert_close(uncond[0, 2 * i : 2 * i + 2], expected, rtol=1e-5, atol=1e-5)
    assert uncond.abs().mean() > 0.5  # not zero tokens


def test_uncond_tokens_are_not_the_tokens_of_a_blank_image(adapter, forward):
    blank_embeds = forward[0][1:]  # the grey style image of the batch
    tokens = adapter.project(blank_embeds)
    assert tokens.shape == (1, 6, 768)
    assert (tokens - adapter.uncond_tokens()).abs().max() > 0.1
    assert blank_embeds.abs().max() > 0.1  # a blank image does not encode to zeros either


def test_project_orders_tokens_high_then_middle_then_low(adapter, adapter_file):
    sd = torch.load(adapter_file, weights_only=True)
    embeds = torch.randn(2, 3, 1024, generator=torch.Generator().manual_seed(0))
    tokens = adapter.project(embeds)
    assert tokens.shape == (2, 6, 768)
    for i in range(3):  # tokens 2i, 2i+1 come from scale i (0 high, 1 middle, 2 low) through module i
        torch.testing.assert_close(
            tokens[:, 2 * i : 2 * i + 2], projection_by_hand(sd, i, embeds[:, i]), rtol=1e-5, atol=1e-5
        )
    # swapping two scales' embeddings changes only their tokens
    swapped = adapter.project(embeds[:, [0, 2, 1]])
    torch.testing.assert_close(swapped[:, :2], tokens[:, :2])
    assert not torch.allclose(swapped[:, 2:4], tokens[:, 2:4], atol=1e-3)
