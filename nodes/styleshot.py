"""StyleShot nodes: load the published files, encode style images, inject style into a MODEL."""

from dataclasses import dataclass

import comfy.controlnet
import comfy.model_management as mm
import comfy.model_patcher
import torch

from ..loaders.model_files import STYLE_ENCODER, STYLESHOT_CONTOUR, STYLESHOT_LINEART
from ..loaders.styleshot import load_adapter, load_encoder
from ..models.style_adapter import LAYER_PRESETS, StyleTokens
from ..models.style_encoder import PATCHES_PER_IMAGE
from ..patches.content_fusion import DEFAULT_MAP_FIT, MAP_FITS, attach, content_encoder, style_controlnet
from ..patches.model_requirements import require_sd1
from ..patches.styleshot import StyleInjection, apply_style
from ..preprocessors.image import check_images, to_rgb_uint8
from ..preprocessors.style_patches import patch_tree, style_crop
from . import host

CATEGORY = "style_suite/StyleShot"


@dataclass(frozen=True, eq=False)
class AdapterFile:
    """What an ip.bin gives: the adapter (projections and K/V weights) as a ModelPatcher, and its
    content-fusion encoder as a ComfyUI ControlNet, or None for a style-only file."""

    patcher: comfy.model_patcher.ModelPatcher
    content: comfy.controlnet.ControlNet | None


def load_adapter_file(path) -> AdapterFile:
    adapter = load_adapter(path)
    weights, adapter.content_fusion = adapter.content_fusion, None  # the ControlNet holds them from here
    return AdapterFile(host.as_patcher(adapter), weights and content_encoder(weights))


@dataclass(frozen=True)
class StyleShot:
    """STYLESHOT: the style-aware encoder and the adapter file's networks. It keeps them loaded
    while ComfyUI's execution cache keeps it (nodes/host.py, cached_load)."""

    encoder: comfy.model_patcher.ModelPatcher
    adapter_file: AdapterFile
    adapter_name: str

    @property
    def adapter(self):
        return self.adapter_file.patcher


class StyleShotLoader:
    DESCRIPTION = (
        "Loads StyleShot's style-aware encoder and adapter: the published style_aware_encoder.bin and ip.bin "
        "(contour or lineart release; its 3.5 GB UNet copy is skipped) or their converted .safetensors. "
        "Files are checked strictly and loaded once."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STYLESHOT",)
    OUTPUT_TOOLTIPS = ("StyleShot encoder and adapter, for Encode Style and Apply Style.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "style_encoder": host.model_input(
                    STYLE_ENCODER, "style_aware_encoder.bin (same file in both releases) or its .safetensors."
                ),
                "adapter": host.model_input(
                    STYLESHOT_CONTOUR,
                    "ip.bin of the contour (Gaojunyao/StyleShot) or lineart (Gaojunyao/StyleShot_lineart) release, "
                    "renamed, or its .safetensors.",
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, style_encoder, adapter):
        return host.check_model_choices(
            style_encoder=(STYLE_ENCODER, style_encoder), adapter=(STYLESHOT_CONTOUR, adapter)
        )

    def load(self, style_encoder, adapter):
        return (
            StyleShot(
                encoder=host.cached_patcher(STYLE_ENCODER, style_encoder, load_encoder),
                adapter_file=host.cached_load(
                    STYLESHOT_CONTOUR,
                    adapter,
                    load_adapter_file,
                    built_as=("adapter", host.compute_dtype(mm.get_torch_device())),
                ),
                adapter_name=adapter,
            ),
        )


class StyleShotEncodeStyle:
    DESCRIPTION = (
        "Encodes style images with StyleShot's style-aware encoder: short side to 512, centre crop, 56 patches at "
        "three scales, shuffled per scale by the seed. Each image gives its own 6 style tokens (or one blended set)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STYLESHOT_STYLE",)
    OUTPUT_TOOLTIPS = ("Style tokens (conditional and unconditional) for Apply Style.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "styleshot": ("STYLESHOT", {"tooltip": "From StyleShot Loader."}),
                "image": (
                    "IMAGE",
                    {"tooltip": "Style images. A batch gives one style per image unless 'blend' is on."},
                ),
                "seed": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 0xFFFFFFFFFFFFFFFF,
                        "control_after_generate": True,
                        "tooltip": "Seed of the patch shuffle. StyleShot shuffles patches within each scale; any order "
                        "is in its training distribution.",
                    },
                ),
                "shuffle": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Shuffle the patches as StyleShot does. Off keeps their spatial order (for "
                        "debugging).",
                    },
                ),
                "blend": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Average the images' style embeddings into one style."},
                ),
            }
        }

    def encode(self, styleshot, image, seed, shuffle, blend):
        check_images(image)
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        high, middle, low = patch_tree(style_crop(image), generator)
        mm.load_models_gpu([styleshot.encoder, styleshot.adapter])
        encoder, adapter = styleshot.encoder.model, styleshot.adapter.model
        weight = next(encoder.parameters())
        report_progress = host.progress(image.shape[0])
        embeds = []
        with torch.no_grad():
            for i in range(image.shape[0]):
                groups = [g[i * n : (i + 1) * n].to(weight) for g, n in zip((high, middle, low), PATCHES_PER_IMAGE)]
                embeds.append(encoder(*groups).float())
                report_progress(i + 1)
            embeds = torch.cat(embeds)
            if blend:
                embeds = embeds.mean(dim=0, keepdim=True)
            projection = next(adapter.parameters())
            cond = adapter.project(embeds.to(projection)).float()
            uncond = adapter.uncond_tokens().float()
        output = mm.intermediate_device()
        return (StyleTokens(cond=cond.to(output), uncond=uncond.to(output)),)


class StyleShotApplyStyle:
    DESCRIPTION = (
        "Injects StyleShot style into an SD1.5 MODEL: decoupled cross-attention on its cross-attention layers "
        "(all 16 as published). Returns a patched copy; sample it with any KSampler. Prompts should describe "
        "content; the style comes from the image."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("A copy of the model with the style injected; the input model is unchanged.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An SD1.5-based model (LoRAs and other patches are kept)."}),
                "styleshot": ("STYLESHOT", {"tooltip": "From StyleShot Loader."}),
                "style": (
                    "STYLESHOT_STYLE",
                    {"tooltip": "From StyleShot Encode Style. Use 1 style or one per latent in the batch."},
                ),
                "strength": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 2.0,
                        "step": 0.01,
                        "tooltip": "Weight of the style attention. 1.0 as published; 0 leaves the model unchanged.",
                    },
                ),
                "start_percent": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.001,
                        "tooltip": "Sampling progress at which style starts (0 = first step).",
                    },
                ),
                "end_percent": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.001,
                        "tooltip": "Sampling progress at which style stops (1 = last step).",
                    },
                ),
                "layers": (
                    list(LAYER_PRESETS),
                    {
                        "tooltip": "Cross-attention layers that take the style. StyleShot uses all 16; the subsets "
                        "(from IPAdapter_plus) keep less of the style image's layout."
                    },
                ),
            },
            "optional": {
                "attn_mask": (
                    "MASK",
                    {
                        "tooltip": "Where the style applies (1) and where not (0); resized to each layer. One mask, or "
                        "one per latent."
                    },
                ),
            },
        }

    def apply(self, model, styleshot, style, strength, start_percent, end_percent, layers, attn_mask=None):
        require_sd1(model.model, "StyleShot Apply Style")
        _check_range(start_percent, end_percent)
        if layers not in LAYER_PRESETS:
            raise ValueError(f"unknown layers preset '{layers}': choose one of {', '.join(LAYER_PRESETS)}")
        sampling = model.get_model_object("model_sampling")
        injection = StyleInjection(
            styleshot.adapter,
            style,
            strength,
            sigma_start=float(sampling.percent_to_sigma(start_percent)),
            sigma_end=float(sampling.percent_to_sigma(end_percent)),
            mask=_masks(attn_mask),
        )
        return (apply_style(model, injection, LAYER_PRESETS[layers]),)


class StyleShotApplyContent:
    DESCRIPTION = (
        "Image-driven StyleShot: the content map (StyleShot Contour with the contour release, Lineart with the "
        "lineart release) steers the layout through StyleShot's content-fusion encoder, a ControlNet that reads "
        "the style tokens instead of the text. Use with Apply Style on the MODEL, and size the latent from the map."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    OUTPUT_TOOLTIPS = (
        "Positive conditioning with the content encoder attached.",
        "Negative conditioning with the content encoder attached (it gets the map too, as published).",
    )
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "positive": (
                    "CONDITIONING",
                    {"tooltip": "Prompt conditioning. Other ControlNets on it keep seeing the text."},
                ),
                "negative": ("CONDITIONING", {"tooltip": "Negative conditioning."}),
                "styleshot": (
                    "STYLESHOT",
                    {"tooltip": "From StyleShot Loader, with the contour or lineart release's ip.bin."},
                ),
                "style": (
                    "STYLESHOT_STYLE",
                    {"tooltip": "From StyleShot Encode Style: the content encoder reads these tokens."},
                ),
                "content_map": (
                    "IMAGE",
                    {
                        "tooltip": "The content map (StyleShot Contour or Lineart): one map, or one per latent. Fitted "
                        "to the latent as 'map_fit' says."
                    },
                ),
                "strength": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 10.0,
                        "step": 0.01,
                        "tooltip": "Weight of the content encoder's residuals. 1.0 as published; 0 leaves the "
                        "conditioning unchanged.",
                    },
                ),
                "start_percent": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.001,
                        "tooltip": "Sampling progress at which content control starts.",
                    },
                ),
                "end_percent": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.001,
                        "tooltip": "Sampling progress at which content control stops.",
                    },
                ),
            },
            "optional": {
                "map_fit": (
                    list(MAP_FITS),
                    {
                        "default": DEFAULT_MAP_FIT,
                        "tooltip": "How the map is fitted to the latent. Stretch: the whole map "
                        "resized with Lanczos, as StyleShot's pipeline does (exact when the latent is sized from the "
                        "map). Centre crop: ComfyUI's ControlNet way, nearest-neighbour, so contour maps stay binary "
                        "and a latent of another aspect ratio keeps the map's proportions.",
                    },
                ),
            },
        }

    def apply(
        self,
        positive,
        negative,
        styleshot,
        style,
        content_map,
        strength,
        start_percent,
        end_percent,
        map_fit=DEFAULT_MAP_FIT,
    ):
        if styleshot.adapter_file.content is None:
            raise ValueError(_no_content_fusion(styleshot.adapter_name))
        _check_range(start_percent, end_percent)
        hint = to_rgb_uint8(content_map).float().div(255).to(mm.intermediate_device())  # as StyleShot's RGB map
        maps, styles = hint.shape[0], style.cond.shape[0]
        if maps > 1 and styles > 1 and maps != styles:
            raise ValueError(f"{maps} content maps and {styles} styles: give 1 of either, or as many of both")
        if strength == 0:
            return (positive, negative)  # as ComfyUI's Apply ControlNet does
        control = style_controlnet(styleshot.adapter_file.content, style, map_fit)
        return tuple(attach((positive, negative), control, hint.movedim(-1, 1), strength, (start_percent, end_percent)))


def _no_content_fusion(adapter_name):
    return (
        f"StyleShot Apply Content needs the content-fusion encoder, and the adapter '{adapter_name}' has none "
        "(it is a style-only ip.bin, like StyleShot's stage-1 weights; text-driven Apply Style works with it). "
        f"Load the contour release's ip.bin ({STYLESHOT_CONTOUR.url}, renamed {STYLESHOT_CONTOUR.name}) or the "
        f"lineart release's ({STYLESHOT_LINEART.url}, renamed {STYLESHOT_LINEART.name}), or a .safetensors "
        "converted from one of them, as the StyleShot Loader's adapter."
    )


def _check_range(start_percent, end_percent):
    if start_percent > end_percent:
        raise ValueError(
            f"start_percent ({start_percent}) is after end_percent ({end_percent}): set start at or before end"
        )


def _masks(mask):
    """MASK [H, W] or [M, H, W] -> [M, H, W] float 0..1 (NaN -> 0), or None."""
    if mask is None:
        return None
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.shape[0] == 0 or mask.shape[1] == 0 or mask.shape[2] == 0:
        raise ValueError(
            f"attn_mask must be a MASK shaped [height, width] or [batch, height, width], got {tuple(mask.shape)}"
        )
    return torch.nan_to_num(mask.float(), nan=0.0).clamp(0, 1)


NODE_CLASS_MAPPINGS = {
    "StyleSuiteStyleShotLoader": StyleShotLoader,
    "StyleSuiteStyleShotEncodeStyle": StyleShotEncodeStyle,
    "StyleSuiteStyleShotApplyStyle": StyleShotApplyStyle,
    "StyleSuiteStyleShotApplyContent": StyleShotApplyContent,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "StyleSuiteStyleShotLoader": "StyleShot Loader",
    "StyleSuiteStyleShotEncodeStyle": "StyleShot Encode Style",
    "StyleSuiteStyleShotApplyStyle": "StyleShot Apply Style",
    "StyleSuiteStyleShotApplyContent": "StyleShot Apply Content",
}
