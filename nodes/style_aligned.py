"""StyleAligned nodes: shared attention across a batch, and a reference image for the batch."""

import comfy.patcher_extension
import comfy.samplers

from ..patches.conditioning import reference_batch, stack_rows, with_reference_row
from ..patches.model_requirements import require_unet
from ..patches.reference import WRAPPER_KEY, ReferenceRow, invert
from ..patches.style_aligned import LAYER_BLOCKS, AlignSettings, apply_batch_align
from . import host

CATEGORY = "style_suite/StyleAligned"
MODES = ("inverted", "renoise")


class StyleAlignedBatchAlign:
    DESCRIPTION = (
        "StyleAligned: every image of a batch takes the style of the first one. Self-attention also attends to the "
        "first image's keys and values, with queries and keys AdaIN-normalised to its statistics; cond and uncond "
        "each use their own first image. Returns a patched copy (SD1.x, SD2.x, SDXL); sample a batch of 2 or more."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("A copy of the model with shared attention; the input model is unchanged.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An SD1.x, SD2.x or SDXL model (LoRAs and other patches are kept)."}),
                "share_attention": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Attend to the reference image's keys and values (the method's core). Off leaves "
                        "only AdaIN.",
                    },
                ),
                "adain_queries": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Normalise each image's attention queries to the reference's mean and std "
                        "(published default: on).",
                    },
                ),
                "adain_keys": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Normalise keys to the reference's statistics (published default: on).",
                    },
                ),
                "adain_values": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Normalise values too (published default: off)."},
                ),
                "shared_score_scale": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 2.0,
                        "step": 0.01,
                        "tooltip": "Scales the reference keys: below 1 flattens attention to the reference (0.5 helps "
                        "against copying famous images). Published default 1.",
                    },
                ),
                "shared_score_shift": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": -10.0,
                        "max": 10.0,
                        "step": 0.001,
                        "tooltip": "Added to the attention logits of the reference tokens: ln 2 = 0.693 weighs each as "
                        "if present twice (the published reference-image setting). Default 0.",
                    },
                ),
                "share_group_norm": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Pool each image's GroupNorm statistics with the reference's (published default: "
                        "on; the SDXL text-to-image demos turn it off).",
                    },
                ),
                "share_layer_norm": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Published control, kept for parity: LayerNorm normalises each token on its own, so "
                        "sharing it changes nothing and costs nothing here.",
                    },
                ),
                "layers": (
                    list(LAYER_BLOCKS),
                    {
                        "tooltip": "Which UNet blocks' self-attention layers share: all as published, or a block "
                        "selection."
                    },
                ),
            }
        }

    def apply(
        self,
        model,
        share_attention,
        adain_queries,
        adain_keys,
        adain_values,
        shared_score_scale,
        shared_score_shift,
        share_group_norm,
        share_layer_norm,
        layers,
    ):
        if layers not in LAYER_BLOCKS:
            raise ValueError(f"unknown layers choice '{layers}': choose one of {', '.join(LAYER_BLOCKS)}")
        settings = AlignSettings(
            share=share_attention,
            adain_queries=adain_queries,
            adain_keys=adain_keys,
            adain_values=adain_values,
            score_scale=shared_score_scale,
            score_shift=shared_score_shift,
        )
        return (apply_batch_align(model, settings, LAYER_BLOCKS[layers], share_group_norm),)


class StyleAlignedInvertReference:
    DESCRIPTION = (
        "DDIM inversion of a reference image for StyleAligned's reference-image mode: the VAE-encoded image is run up "
        "the noise levels through your MODEL and a prompt describing it (CFG 2 as published). The trajectory is "
        "reused by every generation until an input changes."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STYLEALIGNED_TRAJECTORY",)
    OUTPUT_TOOLTIPS = ("The reference at every noise level, for StyleAligned Reference Apply (mode inverted).",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model you generate with (SD1.x, SD2.x or SDXL)."}),
                "positive": (
                    "CONDITIONING",
                    {"tooltip": "A prompt describing the reference image; the reference row is generated with it too."},
                ),
                "negative": (
                    "CONDITIONING",
                    {"tooltip": "Negative prompt (the published SDXL example uses a zeroed one)."},
                ),
                "latent": ("LATENT", {"tooltip": "The reference image, VAE-encoded at the size you generate."}),
                "steps": (
                    "INT",
                    {
                        "default": 50,
                        "min": 1,
                        "max": 1000,
                        "tooltip": "Inversion steps. Use the KSampler's steps and scheduler so the levels match "
                        "exactly; others are interpolated.",
                    },
                ),
                "scheduler": (
                    comfy.samplers.SCHEDULER_NAMES,
                    {
                        "default": "ddim_uniform",
                        "tooltip": "Noise schedule of the inversion, as the KSampler's (ddim_uniform with the ddim "
                        "sampler is the published DDIM).",
                    },
                ),
                "cfg": (
                    "FLOAT",
                    {
                        "default": 2.0,
                        "min": 0.0,
                        "max": 100.0,
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": "CFG of the inversion; 2 as published.",
                    },
                ),
            }
        }

    def invert(self, model, positive, negative, latent, steps, scheduler, cfg):
        require_unet(model.model, "StyleAligned Invert Reference")
        samples = _single_latent(latent, "latent")
        return (invert(model, positive, negative, samples, steps, scheduler, cfg, host.progress(steps)),)


class StyleAlignedReferenceApply:
    DESCRIPTION = (
        "Puts a reference image first in the batch so Batch Align gives every image its style. 'inverted' feeds the "
        "inverted reference at every step (as published, offset 5); 'renoise' needs no inversion and re-noises the "
        "encoded image at each step. The first image of the output is the reference."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("model", "positive", "negative", "latent")
    OUTPUT_TOOLTIPS = (
        "A copy of the model that keeps the reference on the first row; use one with Batch Align.",
        "Positive conditioning with the reference prompt on the first row.",
        "Negative conditioning for the batch with the reference.",
        "The latent batch with the reference first (1 + the input's images).",
    )
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model with StyleAligned Batch Align (before or after this node)."}),
                "positive": (
                    "CONDITIONING",
                    {"tooltip": "Prompt of the images to generate (one row, or one per image)."},
                ),
                "negative": ("CONDITIONING", {"tooltip": "Negative prompt."}),
                "latent": (
                    "LATENT",
                    {"tooltip": "The images to generate, e.g. Empty Latent Image, at the reference's size."},
                ),
                "mode": (
                    list(MODES),
                    {
                        "tooltip": "inverted: the published method, from StyleAligned Invert Reference. renoise: "
                        "cheaper, from the VAE-encoded reference alone."
                    },
                ),
                "offset": (
                    "INT",
                    {
                        "default": 5,
                        "min": 0,
                        "max": 1000,
                        "tooltip": "inverted: the first steps see the reference at step offset+1's lower noise, which "
                        "shows its style earlier (5 as published; 0 follows the trajectory exactly).",
                    },
                ),
            },
            "optional": {
                "trajectory": ("STYLEALIGNED_TRAJECTORY", {"tooltip": "inverted: from StyleAligned Invert Reference."}),
                "reference_latent": (
                    "LATENT",
                    {"tooltip": "renoise: the reference image, VAE-encoded at the latent's size."},
                ),
                "reference_positive": (
                    "CONDITIONING",
                    {
                        "tooltip": "Prompt describing the reference. Default: the inversion's prompt (inverted) or the "
                        "positive prompt (renoise)."
                    },
                ),
            },
        }

    def apply(
        self,
        model,
        positive,
        negative,
        latent,
        mode,
        offset,
        trajectory=None,
        reference_latent=None,
        reference_positive=None,
    ):
        require_unet(model.model, "StyleAligned Reference Apply")
        if mode not in MODES:
            raise ValueError(f"unknown mode '{mode}': choose one of {', '.join(MODES)}")
        rows = latent["samples"].shape[0]
        if mode == "inverted":
            if trajectory is None:
                raise ValueError(
                    "mode 'inverted' needs the trajectory input: connect StyleAligned Invert Reference "
                    "(or choose mode 'renoise' and connect reference_latent)"
                )
            _check_trajectory(trajectory, model, latent)
            reference = model.model.process_latent_out(trajectory.latents[:1].clone())
            reference_positive = reference_positive or trajectory.positive
        else:
            if reference_latent is None:
                raise ValueError(
                    "mode 'renoise' needs the reference_latent input: the reference image through VAE Encode"
                )
            reference = _single_latent(reference_latent, "reference_latent")
            _check_size(reference, latent, "reference_latent")
        patched = model.clone()
        patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.CALC_COND_BATCH, WRAPPER_KEY)
        patched.add_wrapper_with_key(
            comfy.patcher_extension.WrappersMP.CALC_COND_BATCH,
            WRAPPER_KEY,
            ReferenceRow(trajectory if mode == "inverted" else None, offset),
        )
        return (
            patched,
            with_reference_row(positive, rows, reference_positive or positive),
            with_reference_row(negative, rows),
            reference_batch(latent, reference, keep_reference=mode == "renoise"),
        )


def _single_latent(latent, name):
    samples = latent["samples"]
    if samples.ndim != 4 or samples.shape[0] != 1:
        raise ValueError(
            f"{name} must hold one image (samples [1, C, H, W]), got {tuple(samples.shape)}: "
            "encode a single reference image"
        )
    return samples


def _check_size(reference, latent, name):
    have, want = tuple(reference.shape[1:]), tuple(latent["samples"].shape[1:])
    if have != want:
        raise ValueError(
            f"{name} is {have[-1] * 8}x{have[-2] * 8} px ({have[0]} channels) but the latent to generate is "
            f"{want[-1] * 8}x{want[-2] * 8} px ({want[0]} channels): scale the reference image to the generation "
            "size (Upscale Image) before VAE Encode"
        )


def _check_trajectory(trajectory, model, latent):
    model_format = type(model.model.latent_format).__name__
    if trajectory.latent_format != model_format:
        raise ValueError(
            f"the trajectory was inverted with a {trajectory.latent_format} model but this MODEL uses "
            f"{model_format} latents: invert the reference with the model you generate with"
        )
    _check_size(trajectory.latents, latent, "the inverted reference")


class StyleAlignedPromptBatch:
    DESCRIPTION = (
        "One prompt per line, encoded into one conditioning with a row per prompt, so each image of a StyleAligned "
        "batch gets its own subject. Connect 'count' to Empty Latent Image's batch_size."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING", "INT")
    RETURN_NAMES = ("conditioning", "count")
    OUTPUT_TOOLTIPS = ("A conditioning with one row per prompt line.", "How many prompts (the batch size to generate).")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The checkpoint's CLIP."}),
                "prompts": (
                    "STRING",
                    {
                        "multiline": True,
                        "dynamicPrompts": True,
                        "tooltip": "One prompt per line; empty lines are skipped. Put the shared style words in every "
                        "line.",
                    },
                ),
            }
        }

    def encode(self, clip, prompts):
        lines = [line.strip() for line in prompts.splitlines() if line.strip()]
        if not lines:
            raise ValueError("prompts is empty: write one prompt per line")
        if clip is None:
            raise RuntimeError(
                "clip input is invalid: None. If the clip is from a checkpoint loader node your "
                "checkpoint does not contain a valid clip or text encoder model."
            )
        encoded = []
        for line in lines:
            output = clip.encode_from_tokens(clip.tokenize(line), return_pooled=True, return_dict=True)
            encoded.append([output.pop("cond"), output])
        return ([stack_rows(encoded)], len(lines))


NODE_CLASS_MAPPINGS = {
    "StyleSuiteStyleAlignedBatchAlign": StyleAlignedBatchAlign,
    "StyleSuiteStyleAlignedInvertReference": StyleAlignedInvertReference,
    "StyleSuiteStyleAlignedReferenceApply": StyleAlignedReferenceApply,
    "StyleSuiteStyleAlignedPromptBatch": StyleAlignedPromptBatch,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "StyleSuiteStyleAlignedBatchAlign": "StyleAligned Batch Align",
    "StyleSuiteStyleAlignedInvertReference": "StyleAligned Invert Reference",
    "StyleSuiteStyleAlignedReferenceApply": "StyleAligned Reference Apply",
    "StyleSuiteStyleAlignedPromptBatch": "StyleAligned Prompt Batch",
}
