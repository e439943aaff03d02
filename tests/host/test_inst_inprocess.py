"""InST nodes in a real ComfyUI: the style token from ComfyUI's CLIP_VISION (against transformers'
CLIP and InST's own network on the same weights), prompts encoded with it (against ComfyUI's own
`embedding:` mechanism), stochastic inversion and the KSamplerAdvanced run after it (against InST's
published schedule on diffusers' UNet), and latent AdaIN."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor

from fixtures import inst
from fixtures.clip_models import reference_vision, write_clip_l
from fixtures.sampling import relative
from fixtures.styleshot_nodes import tensors

SIZE = (16, 16)  # latent: 128 px


def node(pack, name):
    return pack.NODE_CLASS_MAPPINGS["StyleSuiteInST" + name]()


def style_pixels(seed, height=96, width=128):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(1, 255, size=(height, width, 3), dtype=np.uint8)
    pixels[:20, :30] = 0  # exactly black: what InST's cast turns white
    return pixels


def comfy_image(pixels):
    return torch.from_numpy(pixels).float().div(255).unsqueeze(0)


# --- the style token ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_vision(comfy, clip_vision_l):
    import comfy.clip_vision

    return comfy.clip_vision.load(str(clip_vision_l))


@pytest.fixture(scope="module")
def reference(clip_vision_l, model_root):
    """transformers' CLIP vision model and InST's own network (test rendering), same weights."""
    with inst.ldm_classes():
        network = torch.load(model_root / "inst" / "embeddings.pt", weights_only=False)["attention"].eval()
    return reference_vision(clip_vision_l), network


def published_token(reference, picture_uint8):
    """InST's FrozenCLIPEmbedder: CLIPProcessor, CLIPModel.image_embeds (normalised), the network."""
    vision, network = reference
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    pixels = torch.from_numpy(processor(images=picture_uint8, return_tensors="np")["pixel_values"])
    with torch.no_grad():
        embeds = torch.nn.functional.normalize(vision(pixel_values=pixels).image_embeds, dim=-1)
        return network(embeds.view(1, 1, 768), embeds.view(1, 1, 768)).view(1, 768)


def official_picture(pixels):
    """InST's load_img (PIL LANCZOS 512x512, 2u/255 - 1) and FrozenCLIPEmbedder's .astype(np.uint8)."""
    resized = np.asarray(Image.fromarray(pixels).resize((512, 512), Image.LANCZOS)).astype(np.float32)
    with np.errstate(invalid="ignore"):
        return (2.0 * resized / 255.0 - 1.0).astype(np.uint8)


@pytest.mark.parametrize("preprocessing", ["official", "corrected"])
def test_the_token_is_insts_network_on_clips_embedding_of_the_picture(pack, clip_vision, reference, preprocessing):
    pixels = style_pixels(1)
    (token,) = node(pack, "StyleToken").token("embeddings.pt", preprocessing, clip_vision, comfy_image(pixels))
    picture = official_picture(pixels) if preprocessing == "official" else pixels
    expected = published_token(reference, picture)
    assert token.vectors.shape == (1, 768) and token.vectors.dtype == torch.float32
    assert relative(token.vectors, expected) < 1e-4


def test_without_a_style_image_official_uses_insts_black_picture(pack, clip_vision, reference):
    (token,) = node(pack, "StyleToken").token("embeddings.pt", "official", clip_vision)
    assert relative(token.vectors, published_token(reference, np.zeros((512, 512, 3), np.uint8))) < 1e-4
    with pytest.raises(ValueError, match="'corrected' preprocessing shows CLIP the style image"):
        node(pack, "StyleToken").token("embeddings.pt", "corrected", clip_vision)


def test_embeddings_are_cached_per_model_and_picture(pack, clip_vision, monkeypatch):
    calls = []
    real = clip_vision.encode_image
    monkeypatch.setattr(clip_vision, "encode_image", lambda image, **kw: calls.append(1) or real(image, **kw))
    token = node(pack, "StyleToken").token
    first = token("embeddings.pt", "corrected", clip_vision, comfy_image(style_pixels(7)))[0]
    again = token("embeddings.pt", "corrected", clip_vision, comfy_image(style_pixels(7)))[0]
    assert len(calls) == 1 and torch.equal(first.vectors, again.vectors)
    token("embeddings.pt", "corrected", clip_vision, comfy_image(style_pixels(8)))
    assert len(calls) == 2
    # official: two 512 px photos with the same exactly-black region show CLIP the same picture
    token("embeddings.pt", "official", clip_vision, comfy_image(style_pixels(7, 512, 512)))
    token("embeddings.pt", "official", clip_vision, comfy_image(style_pixels(8, 512, 512)))
    assert len(calls) == 3


def test_an_inst_file_needs_a_vit_l_clip_vision_and_one_image(pack, clip_vision):
    token = node(pack, "StyleToken").token
    with pytest.raises(ValueError, match="embeddings.pt is an InST file.*clip-vit-large-patch14.safetensors"):
        token("embeddings.pt", "official", None, comfy_image(style_pixels(1)))
    with pytest.raises(ValueError, match="one style image, got a batch of 2"):
        token("embeddings.pt", "official", clip_vision, torch.cat([comfy_image(style_pixels(1))] * 2))

    class ViTH:
        image_size = 224

        def encode_image(self, image, crop=True):
            return {"image_embeds": torch.zeros(1, 1024)}

    with pytest.raises(ValueError, match="gives 1024-wide embeddings.*load clip-vit-large-patch14"):
        token("embeddings.pt", "official", ViTH(), comfy_image(style_pixels(1)))


# --- prompts with the token -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ti_files(model_root):
    """Textual-inversion files in the inst folder: 1 and 3 vectors (clip_l safetensors)."""
    files = {}
    for n in (1, 3):
        files[n] = f"style{n}.safetensors"
        inst.write_safetensors(model_root / "inst" / files[n], clip_l=inst.vectors(n, seed=10 + n) * 0.02)
    return files


@pytest.fixture(scope="module")
def clip(comfy, model_root, tmp_path_factory, ti_files):
    """ComfyUI's SD1 CLIP (random CLIP-L weights) whose `embedding:` folder is the inst folder."""
    import comfy.sd

    path = write_clip_l(tmp_path_factory.mktemp("clip") / "clip_l.safetensors")
    return comfy.sd.load_clip(
        ckpt_paths=[str(path)],
        embedding_directory=[str(model_root / "inst")],
        clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION,
    )


def encode(clip, text):
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


LONG = " ".join(f"word{i}" for i in range(70))
PROMPTS = [
    "*",
    "a cat in the style of *",
    "(* :1.3), a (quiet:0.8) harbour",
    "* and * together, by *",
    f"{LONG} in the style of * and {LONG}",  # the placeholder near the end of the first chunk
]


@pytest.mark.parametrize("vectors", [1, 3])
@pytest.mark.parametrize("text", PROMPTS)
def test_encoding_equals_comfyuis_embedding_syntax_for_the_same_vectors(pack, clip, ti_files, text, vectors):
    (token,) = node(pack, "StyleToken").token(ti_files[vectors], "official")
    ours = node(pack, "TextEncode").encode(clip, token, text, "*")[0]
    stem = ti_files[vectors].rsplit(".", 1)[0]
    reference = encode(clip, text.replace("*", f"embedding:{stem}"))
    assert len(ours) == len(reference) == 1
    assert ours[0][0].shape == reference[0][0].shape and ours[0][0].shape[1] % 77 == 0
    torch.testing.assert_close(ours[0][0], reference[0][0], atol=0, rtol=0)
    torch.testing.assert_close(ours[0][1]["pooled_output"], reference[0][1]["pooled_output"], atol=0, rtol=0)


def test_the_token_changes_the_encoding_from_the_placeholder_on_and_nothing_before(pack, clip, ti_files):
    """CLIP's causal attention: positions before '*' see the same tokens as without the token."""
    (token,) = node(pack, "StyleToken").token(ti_files[1], "official")
    text = "a quiet harbour at dawn in the style of *"
    ours = node(pack, "TextEncode").encode(clip, token, text, "*")[0][0][0]
    plain = encode(clip, text)[0][0]
    position = 10  # start token + 9 words
    assert torch.equal(ours[:, :position], plain[:, :position])
    assert (ours[:, position:] - plain[:, position:]).abs().amax(dim=-1).min() > 0


def test_another_single_token_placeholder_works(pack, clip, ti_files):
    (token,) = node(pack, "StyleToken").token(ti_files[1], "official")
    ours = node(pack, "TextEncode").encode(clip, token, "a cat, sks style", "sks")[0]
    reference = encode(clip, f"a cat, embedding:{ti_files[1].rsplit('.', 1)[0]} style")
    assert torch.equal(ours[0][0], reference[0][0])


@pytest.mark.parametrize(
    ("text", "placeholder", "says"),
    [
        ("a cat in watercolour", "*", "the prompt has no '\\*', so it would get no style"),
        ("a cat in the style of *, watercolour*", "*", None),
        ("a cat in the style of *.", "*", "put spaces around it"),
        ("a cat **", "*", "put spaces around it"),
        ("a cat <my-style>", "<my-style>", "is \\d+ CLIP tokens; it must be exactly one"),
    ],
)
def test_prompts_without_a_usable_placeholder_are_refused_saying_why(pack, clip, ti_files, text, placeholder, says):
    (token,) = node(pack, "StyleToken").token(ti_files[1], "official")
    encode_node = node(pack, "TextEncode")
    if says is None:
        encode_node.encode(clip, token, text, placeholder)  # one usable '*' is enough
        return
    with pytest.raises(ValueError, match=says):
        encode_node.encode(clip, token, text, placeholder)


def test_a_clip_other_than_sd1s_is_refused(pack, ti_files):
    (token,) = node(pack, "StyleToken").token(ti_files[1], "official")

    class SDXLClip:
        def tokenize(self, text, return_word_ids=False):
            return {"g": [[]], "l": [[]]}

    with pytest.raises(ValueError, match="needs the CLIP of an SD1.x checkpoint.*g, l"):
        node(pack, "TextEncode").encode(SDXLClip(), token, "*", "*")


# --- stochastic inversion -------------------------------------------------------------------------


def ddpm_alphas():
    """SD1's alphas_cumprod: scaled_linear betas 0.00085 to 0.012 over 1000 steps."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


@pytest.fixture(scope="module")
def content():
    return {"samples": tensors(20, 1, 4, *SIZE) * 4}


@pytest.fixture(scope="module")
def texts():
    return tensors(21, 1, 77, 768), tensors(22, 1, 77, 768)  # style prompt, empty prompt


def published_z_enc(unet, z0, noise, text, strength):
    """InST.ipynb: q_sample to t = strength * 1000 with `noise`, the UNet's noise under the prompt
    (no CFG), stochastic_encode with that prediction (use_original_steps)."""
    alphas = ddpm_alphas()
    t = int(strength * 1000)
    a = alphas[t]
    noisy = (a.sqrt() * z0 + (1 - a).sqrt() * noise).float()
    with torch.no_grad():
        predicted = unet(noisy, t, encoder_hidden_states=text).sample
    return (a.sqrt() * z0 + (1 - a).sqrt() * predicted).float()


def test_the_start_latent_is_insts_stochastic_encoding(pack, unets, sd15, content, texts):
    from comfy.sample import prepare_noise

    latent, steps, start = node(pack, "StochasticInversion").invert(
        sd15, [[texts[0], {}]], content, 0.7, 50, "ddim_uniform", 42
    )
    assert (steps, start) == (50, 15)
    z0 = content["samples"] * 0.18215
    noise = prepare_noise(content["samples"], 42)
    z_enc = published_z_enc(unets[0], z0, noise, texts[0], 0.7)
    # the sampler starts at t = 681 (step 15 of ddim_uniform): ComfyUI's x = z / sqrt(alpha_bar)
    expected = z_enc / ddpm_alphas()[681].sqrt().float() / 0.18215
    assert relative(latent["samples"], expected) < 1e-3


def test_ksampler_advanced_from_the_start_step_runs_insts_ddim_decode(comfy, pack, unets, sd15, content, texts):
    """5 steps, strength 0.6: InST encodes at t = 600 and decodes 401, 201, 1 with CFG 10 and eta 0."""
    from comfy.sample import prepare_noise

    positive, negative = [[texts[0], {}]], [[texts[1], {}]]
    latent, steps, start = node(pack, "StochasticInversion").invert(sd15, positive, content, 0.6, 5, "ddim_uniform", 3)
    assert (steps, start) == (5, 2)
    (out,) = (
        comfy[0]
        .KSamplerAdvanced()
        .sample(
            sd15, "disable", 0, steps, 10.0, "ddim", "ddim_uniform", positive, negative, latent, start, 10000, "disable"
        )
    )
    alphas = ddpm_alphas()
    unet = unets[0]
    x = published_z_enc(unet, content["samples"] * 0.18215, prepare_noise(content["samples"], 3), texts[0], 0.6)
    for t, t_prev in ((401, 201), (201, 1), (1, None)):
        with torch.no_grad():
            e_u, e_c = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([texts[1], texts[0]])).sample.chunk(2)
        e = e_u + 10.0 * (e_c - e_u)
        a_t = alphas[t]
        a_prev = alphas[t_prev] if t_prev is not None else alphas[0]
        x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
        x = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e).float()
    # ComfyUI ends at sigma 0 (the last prediction of x0); InST one step short of it, at alpha_bar[0]
    assert relative(out["samples"], x0.float() / 0.18215) < 2e-3


def test_steps_that_do_not_divide_1000_start_where_ldms_ddim_starts(pack, sd15):
    import comfy.samplers

    sampling = sd15.get_model_object("model_sampling")
    inversion = pack.patches.stochastic_inversion
    sigma_inv, sigma_start, start = inversion.inversion_schedule(sampling, 30, 0.7)
    # LDM: 31 DDIM steps of stride 33 (1, 34, ..., 991); t_enc = 21 -> starts at 1 + 33 * 20 = 661
    sigmas = comfy.samplers.calculate_sigmas(sampling, "ddim_uniform", 30)
    assert len(sigmas) == 32 and start == 10
    assert sigma_start == pytest.approx(float(sampling.sigma(torch.tensor(661.0))), rel=1e-6)
    assert sigma_inv == pytest.approx(float(sampling.sigma(torch.tensor(700.0))), rel=1e-6)


def test_inversion_refusals(pack, sd15, content, texts):
    invert = node(pack, "StochasticInversion").invert
    with pytest.raises(ValueError, match="leaves no step to denoise"):
        invert(sd15, [[texts[0], {}]], content, 0.01, 50, "ddim_uniform", 0)
    from fixtures.sd15_unet import tiny_comfy_model

    with pytest.raises(ValueError, match="InST Stochastic Inversion needs an SD1.x model"):
        invert(tiny_comfy_model("sdxl"), [[texts[0], {}]], content, 0.7, 50, "ddim_uniform", 0)


# --- latent AdaIN ---------------------------------------------------------------------------------


def test_latent_adain_keeps_the_latents_other_entries_and_refuses_mismatches(pack):
    adain = node(pack, "LatentAdaIN").adain
    mask = torch.ones(1, 16, 16)
    content = {"samples": tensors(1, 2, 4, 8, 8) * 3, "noise_mask": mask}
    (out,) = adain(content, {"samples": tensors(2, 1, 4, 6, 10)}, 1.0)
    assert out["noise_mask"] is mask and out["samples"].shape == (2, 4, 8, 8)
    assert torch.allclose(out["samples"].mean(dim=(2, 3)), tensors(2, 1, 4, 6, 10).mean(dim=(2, 3)), atol=1e-5)
    with pytest.raises(ValueError, match="same channels"):
        adain(content, {"samples": tensors(2, 1, 16, 8, 8)}, 1.0)
    with pytest.raises(ValueError, match="one per content latent \\(2\\), got 3"):
        adain(content, {"samples": tensors(2, 3, 4, 8, 8)}, 1.0)
