"""InST nodes: the learned style token, prompts with it, stochastic inversion, latent AdaIN."""

import hashlib
import logging
import weakref
from dataclasses import dataclass

import comfy.samplers
import torch
import torch.nn.functional as F

from ..loaders.inst import load_style_file
from ..loaders.model_files import CLIP_VISION_L, INST_STYLE
from ..models.adain import latent_adain
from ..models.inst_network import DIM
from ..patches.model_requirements import require_sd1
from ..patches.placeholder import ChunkLayout, placeholder_token, replace_placeholder
from ..patches.stochastic_inversion import stochastic_inversion
from ..preprocessors.clip_view import CLIP_SIZE, PREPROCESSING, clip_view
from ..preprocessors.image import check_images
from . import host

CATEGORY = "style_suite/InST"


@dataclass(frozen=True)
class StyleToken:
    """INST_TOKEN: the vectors [n, 768] that stand where the prompt's placeholder stands."""

    vectors: torch.Tensor


# CLIP ViT-L/14 image embeddings per CLIP vision model and picture shown to it (sha1 of its pixels).
_embeddings = weakref.WeakKeyDictionary()


class InSTStyleToken:
    DESCRIPTION = (
        "InST's learned style token. An InST file (embeddings.pt) holds a small network that turns the CLIP ViT-L/14 "
        "embedding of the style image into the token; textual-inversion embeddings hold the token itself. "
        "Files go in models/inst, never in models/embeddings (ComfyUI misreads InST files there)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("INST_TOKEN",)
    OUTPUT_TOOLTIPS = ("The style token, for InST Text Encode.",)
    FUNCTION = "token"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "style_file": host.model_input(
                    INST_STYLE,
                    "InST embeddings.pt, or a textual-inversion embedding for SD1.x (.pt, .bin, .safetensors).",
                ),
                "preprocessing": (
                    list(PREPROCESSING),
                    {
                        "tooltip": "official: what InST's code shows CLIP (a bug casts the image to an almost black "
                        "picture; the network was trained on it, so results match the paper). corrected: "
                        "the style image itself, as CLIP expects it (not what the network was trained on)."
                    },
                ),
            },
            "optional": {
                "clip_vision": (
                    "CLIP_VISION",
                    {
                        "tooltip": f"OpenAI CLIP ViT-L/14 ({CLIP_VISION_L.name}); needed by InST files, not by "
                        "textual-inversion embeddings."
                    },
                ),
                "style_image": (
                    "IMAGE",
                    {
                        "tooltip": "The style image the file was trained on (one image). Without it, 'official' uses "
                        "the black picture InST's code shows CLIP when no image is given."
                    },
                ),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, style_file):
        return host.check_model_choice(INST_STYLE, style_file)

    def token(self, style_file, preprocessing, clip_vision=None, style_image=None):
        # kept on the node object, as ComfyUI's LoRA loader keeps its LoRA (see Preprocessor.network)
        self.loaded = loaded = host.cached_load(INST_STYLE, style_file, load_style_file, built_as="inst")
        if loaded.vectors is not None:
            if style_image is not None:
                logging.warning(
                    f"InST Style Token: {style_file} is a {loaded.kind} file; its token is fixed, "
                    "so the style image is not used"
                )
            return (StyleToken(vectors=loaded.vectors),)
        if clip_vision is None:
            raise ValueError(
                f"{style_file} is an InST file: its token is computed from a style image's CLIP ViT-L/14 embedding. "
                f"Connect a Load CLIP Vision with {CLIP_VISION_L.name} (models/clip_vision, from {CLIP_VISION_L.url})."
            )
        embedding = _image_embedding(clip_vision, _picture(style_image, preprocessing))
        with torch.no_grad():
            vector = loaded.network.token(F.normalize(embedding, dim=-1))
        return (StyleToken(vectors=vector),)


def _picture(style_image, preprocessing):
    if style_image is None:
        if preprocessing != "official":
            raise ValueError("'corrected' preprocessing shows CLIP the style image: connect the style image")
        return torch.zeros(1, CLIP_SIZE, CLIP_SIZE, 3)  # InST's fallback: a random image cast to black
    check_images(style_image)
    if style_image.shape[0] != 1:
        raise ValueError(
            f"InST computes its token from one style image, got a batch of {style_image.shape[0]}: "
            "pick one (Image From Batch)"
        )
    return clip_view(style_image, preprocessing)


def _image_embedding(clip_vision, picture):
    """The projected (not normalised) CLIP image embedding [768] of a 224x224 picture, cached."""
    digest = hashlib.sha1(picture.numpy().tobytes()).hexdigest()
    cached = _embeddings.setdefault(clip_vision, {})
    if digest not in cached:
        size = getattr(clip_vision, "image_size", None)
        with torch.no_grad():
            embedding = (
                None if size != CLIP_SIZE else clip_vision.encode_image(picture)["image_embeds"][0].float().cpu()
            )
        if embedding is None or embedding.shape[-1] != DIM:
            width = "" if embedding is None else f" and gives {embedding.shape[-1]}-wide embeddings"
            raise ValueError(
                f"InST's network reads OpenAI CLIP ViT-L/14 embeddings (224 px input, 768 wide), but this CLIP vision "
                f"model takes {size} px images{width} (ViT-H gives 1024, bigG 1280): load {CLIP_VISION_L.name} in "
                "Load CLIP Vision."
            )
        cached[digest] = embedding
    return cached[digest]


class InSTTextEncode:
    DESCRIPTION = (
        "Encodes a prompt with InST's style token where the placeholder (*) stands, e.g. 'a cat in the style of *'. "
        "Prompt weighting, several placeholders and long prompts work as with CLIP Text Encode. SD1.x CLIP only."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("The prompt with the style token, as CLIP Text Encode gives it.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The CLIP of an SD1.x checkpoint."}),
                "token": ("INST_TOKEN", {"tooltip": "From InST Style Token."}),
                "text": (
                    "STRING",
                    {
                        "multiline": True,
                        "dynamicPrompts": True,
                        "default": "*",
                        "tooltip": "The prompt; the style goes where the placeholder stands (InST's own prompt is just "
                        "'*'). Put spaces around it: '*,' and '**' are other CLIP tokens.",
                    },
                ),
                "placeholder": (
                    "STRING",
                    {
                        "default": "*",
                        "tooltip": "The word the token replaces; it must be a single CLIP token (InST trained with "
                        "'*').",
                    },
                ),
            }
        }

    def encode(self, clip, token, text, placeholder):
        tokens = clip.tokenize(text, return_word_ids=True)
        if set(tokens) != {"l"}:
            raise ValueError(
                f"InST Text Encode needs the CLIP of an SD1.x checkpoint (one CLIP-L text encoder), but this CLIP has "
                f"the text encoders {', '.join(sorted(tokens))}: InST tokens are trained for SD1.x"
            )
        layout = ChunkLayout.of_empty_prompt(clip.tokenize("")["l"])
        ids = placeholder_token(clip.tokenize(placeholder)["l"], layout)
        if len(ids) != 1:
            raise ValueError(
                f"the placeholder {placeholder!r} is {len(ids)} CLIP tokens; it must be exactly one (such as *, as "
                "InST trained)"
            )
        chunks, count = replace_placeholder(tokens["l"], ids[0], token.vectors, layout)
        if count == 0:
            raise ValueError(_no_placeholder(text, placeholder))
        return (clip.encode_from_tokens_scheduled({"l": chunks}),)


def _no_placeholder(text, placeholder):
    if placeholder in text:
        return (
            f"the prompt has {placeholder!r} only joined to other symbols, which CLIP reads as other tokens "
            f"('{placeholder},' and '{placeholder}{placeholder}' are not '{placeholder}'): put spaces around it"
        )
    return (
        f"the prompt has no {placeholder!r}, so it would get no style: InST puts its token where {placeholder!r} "
        f"stands, for example 'a cat in the style of {placeholder}'"
    )


class InSTStochasticInversion:
    DESCRIPTION = (
        "InST's stochastic inversion: the content latent is noised to strength x 1000, the UNet predicts that noise "
        "under the style prompt, and the latent is rebuilt from the prediction, keeping the content's layout. Sample "
        "it with KSamplerAdvanced: add_noise disable, steps and start_at_step from here, the same scheduler, "
        "sampler ddim, CFG 10, return_with_leftover_noise disable."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT", "INT", "INT")
    RETURN_NAMES = ("latent", "steps", "start_at_step")
    OUTPUT_TOOLTIPS = (
        "The noisy start latent (noise already in it).",
        "The steps, for KSamplerAdvanced.",
        "The step to start at, for KSamplerAdvanced: steps - strength x steps.",
    )
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An SD1.x model (InST tokens are trained on SD1.4)."}),
                "positive": (
                    "CONDITIONING",
                    {
                        "tooltip": "The style prompt from InST Text Encode; the noise is predicted under it, without "
                        "CFG."
                    },
                ),
                "latent": (
                    "LATENT",
                    {"tooltip": "The content image, VAE-encoded (after InST Latent AdaIN, as InST does)."},
                ),
                "strength": (
                    "FLOAT",
                    {
                        "default": 0.7,
                        "min": 0.01,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "How much is regenerated: the content is noised to strength x 1000 and the last "
                        "strength x steps steps are sampled. InST uses 0.7.",
                    },
                ),
                "steps": (
                    "INT",
                    {
                        "default": 50,
                        "min": 1,
                        "max": 1000,
                        "tooltip": "Steps of the whole schedule (InST: 50); connect the output to KSamplerAdvanced's "
                        "steps.",
                    },
                ),
                "scheduler": (
                    comfy.samplers.SCHEDULER_NAMES,
                    {
                        "default": "ddim_uniform",
                        "tooltip": "The KSamplerAdvanced scheduler; ddim_uniform is InST's DDIM schedule.",
                    },
                ),
                "seed": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 0xFFFFFFFFFFFFFFFF,
                        "control_after_generate": True,
                        "tooltip": "Seed of the noise that the UNet's prediction replaces.",
                    },
                ),
            }
        }

    def invert(self, model, positive, latent, strength, steps, scheduler, seed):
        require_sd1(model.model, "InST Stochastic Inversion")
        samples, start = stochastic_inversion(model, positive, latent, strength, steps, seed, scheduler)
        return ({**latent, "samples": samples}, steps, start)


class InSTLatentAdaIN:
    DESCRIPTION = (
        "Gives the content latent the style latent's per-channel mean and deviation (AdaIN), as InST does before its "
        "inversion. Works on any latents with the same channels; sizes may differ."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The content latent with the style latent's statistics.",)
    FUNCTION = "adain"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "content": ("LATENT", {"tooltip": "The content image, VAE-encoded."}),
                "style": ("LATENT", {"tooltip": "The style image, VAE-encoded: one image, or one per content image."}),
                "strength": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "1 takes the style's statistics fully (InST), 0 leaves the content.",
                    },
                ),
            }
        }

    def adain(self, content, style, strength):
        c, s = content["samples"], style["samples"]
        if c.ndim != 4 or s.ndim != 4 or c.shape[1] != s.shape[1]:
            raise ValueError(
                f"content latents {tuple(c.shape)} and style latents {tuple(s.shape)} must both be [batch, channels, "
                "height, width] with the same channels: encode both with the same VAE"
            )
        if 0 in c.shape[2:] or 0 in s.shape[2:]:
            raise ValueError(
                f"content latents {tuple(c.shape)} or style latents {tuple(s.shape)} have no pixels: "
                "encode images of at least 8x8 pixels"
            )
        if s.shape[0] not in (1, c.shape[0]):
            raise ValueError(f"give one style latent or one per content latent ({c.shape[0]}), got {s.shape[0]}")
        return ({**content, "samples": latent_adain(c, s.to(c.device), strength)},)


NODE_CLASS_MAPPINGS = {
    "StyleSuiteInSTStyleToken": InSTStyleToken,
    "StyleSuiteInSTTextEncode": InSTTextEncode,
    "StyleSuiteInSTStochasticInversion": InSTStochasticInversion,
    "StyleSuiteInSTLatentAdaIN": InSTLatentAdaIN,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "StyleSuiteInSTStyleToken": "InST Style Token",
    "StyleSuiteInSTTextEncode": "InST Text Encode",
    "StyleSuiteInSTStochasticInversion": "InST Stochastic Inversion",
    "StyleSuiteInSTLatentAdaIN": "InST Latent AdaIN",
}
