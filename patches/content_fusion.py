"""StyleShot's content-fusion encoder as a ComfyUI ControlNet (docs/design/styleshot.md 4,
docs/design/comfyui.md 4).

The encoder is a stock SD1.5 ControlNet in diffusers layout, so ComfyUI's own loader builds it and
ComfyUI's own ControlNet code runs it (hint resizing, strength, start/end, chaining, merging).
What differs is the context of its cross-attention: the 6 style tokens of each batch chunk
(conditional tokens for cond chunks, unconditional ones for uncond chunks), never the text. The
context comes from the control object itself, so other ControlNets in the same chain still see
the text.
"""

import logging
from typing import NamedTuple

import comfy.controlnet
import comfy.utils

from ..models.style_adapter import route
from .model_requirements import require_sd1

FEATURE = "StyleShot Apply Content"


class MapFit(NamedTuple):
    """How the content map is fitted to each call's latent: comfy.utils.common_upscale's resampling
    and crop, and what the console says happened to a map of another size."""

    method: str
    crop: str
    described: str


# StyleShot's pipeline resizes the whole map to the output size with PIL Lanczos (diffusers'
# VaeImageProcessor), without cropping, and with no size given the output is the map's size rounded
# down to a multiple of 8. ComfyUI's ControlNets crop the centre to the latent's aspect ratio and
# resize nearest-exact, which keeps a binary contour map binary.
MAP_FITS = {
    "stretch, Lanczos (StyleShot)": MapFit(
        "lanczos", "disabled", "resized to it whole (its proportions change if the latent's differ)"
    ),
    "centre crop, nearest (ComfyUI)": MapFit("nearest-exact", "center", "cropped to the centre and resized"),
}
DEFAULT_MAP_FIT = "stretch, Lanczos (StyleShot)"


def content_encoder(weights):
    """The content-fusion encoder's weights (diffusers layout) as a ComfyUI ControlNet, in the dtype
    ComfyUI picks for ControlNets; it copies them, so it is then their only holder."""
    control = comfy.controlnet.load_controlnet_state_dict(dict(weights))  # pops from its argument
    if control is None:
        raise ValueError("ComfyUI did not recognise the content-fusion encoder as an SD1.5 ControlNet")
    return control


def style_controlnet(controlnet, style, map_fit):
    """A copy of ComfyUI ControlNet `controlnet` whose cross-attention context is `style`
    (StyleTokens) and whose map is fitted to the latent as `map_fit` (a MAP_FITS key) says;
    ControlNet.copy() builds the copy, which then takes this class."""
    if map_fit not in MAP_FITS:
        raise ValueError(f"unknown map_fit '{map_fit}': choose one of {', '.join(MAP_FITS)}")
    control = comfy.controlnet.ControlNet.copy(controlnet)
    control.__class__ = StyleContentControlNet
    control.style = style
    control.map_fit = map_fit
    control._contexts = {}  # routed tokens per batch layout, device and dtype: fixed for a run
    control._reported = set()  # latent sizes the map was fitted to, reported once per run
    return control


def attach(conditionings, control, hint, strength, percent_range):
    """New CONDITIONINGs with `control` (given `hint` [B, C, H, W] 0..1, strength and start/end
    percent) chained after the control each entry already has, as ComfyUI's Apply ControlNet
    (Advanced) node does: entries with the same previous control share one copy, so positive and
    negative still batch together. The input lists and dicts are not changed."""
    copies = {}
    attached = []
    for conditioning in conditionings:
        entries = []
        for embedding, options in conditioning:
            previous = options.get("control")
            if previous not in copies:
                copies[previous] = control.copy().set_cond_hint(hint, strength, percent_range)
                copies[previous].set_previous_controlnet(previous)
            entries.append([embedding, {**options, "control": copies[previous], "control_apply_to_uncond": False}])
        attached.append(entries)
    return attached


class StyleContentControlNet(comfy.controlnet.ControlNet):
    style = None  # StyleTokens, set by style_controlnet()
    map_fit = DEFAULT_MAP_FIT

    def copy(self):
        return style_controlnet(self, self.style, self.map_fit)

    def pre_run(self, model, percent_to_timestep_function):
        require_sd1(model, FEATURE)  # before the first step, not as a shape error inside it
        self._reported = set()
        super().pre_run(model, percent_to_timestep_function)

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        cond_or_uncond = transformer_options.get("cond_or_uncond") or [0] * batched_number
        rows = x_noisy.shape[0] // len(cond_or_uncond)
        self._check_content_batch(rows)
        self._report_resize(x_noisy)
        self._fit_map(x_noisy)
        styled = {**cond, "crossattn_controlnet": self._context(cond_or_uncond, rows, x_noisy)}
        previous = self.previous_controlnet
        if previous is None:
            return super().get_control(x_noisy, t, styled, batched_number, transformer_options)
        # ControlNet.get_control passes its own cond to the previous ControlNet: run that one first
        # with the text cond, and hand ComfyUI its result for merging.
        self.previous_controlnet = _Computed(
            previous.get_control(x_noisy, t, cond, batched_number, transformer_options)
        )
        try:
            return super().get_control(x_noisy, t, styled, batched_number, transformer_options)
        finally:
            self.previous_controlnet = previous

    def _context(self, cond_or_uncond, rows, x_noisy):
        """Each chunk's style tokens stacked for this batch layout, on the latent's device in the
        ControlNet's dtype; built once per layout, not at every step."""
        dtype = self.manual_cast_dtype or self.control_model.dtype
        key = (tuple(cond_or_uncond), rows, x_noisy.device, dtype)
        if key not in self._contexts:
            tokens = route(self.style.cond, self.style.uncond, cond_or_uncond, rows)
            self._contexts[key] = tokens.to(device=x_noisy.device, dtype=dtype)
        return self._contexts[key]

    def _fit_map(self, x_noisy):
        """Fit the map to this call's latent as `map_fit` says. ControlNet.get_control keeps a hint
        that already has the latent's size, so its own fitting (centre crop) does not run after this."""
        height, width = (side * self.compression_ratio for side in x_noisy.shape[-2:])
        if self.cond_hint is not None and tuple(self.cond_hint.shape[-2:]) == (height, width):
            return
        fit = MAP_FITS[self.map_fit]
        hint = comfy.utils.common_upscale(self.cond_hint_original, width, height, fit.method, fit.crop)
        self.cond_hint = hint.to(device=x_noisy.device, dtype=self.manual_cast_dtype or self.control_model.dtype)

    def _check_content_batch(self, rows):
        maps = self.cond_hint_original.shape[0]
        if maps not in (1, rows):
            raise ValueError(
                f"{FEATURE}: {maps} content maps for a latent batch of {rows}: give 1 content map, or one per latent"
            )

    def _report_resize(self, x_noisy):
        """The map is fitted to each call's latent; an area conditioning's call gets only its area.
        StyleShot's output takes the map's size (rounded down to a multiple of 8), so say once per
        run and size when they differ by more than that rounding."""
        height, width = self.cond_hint_original.shape[-2:]
        latent = tuple(x_noisy.shape[-2:])
        if (height // self.compression_ratio, width // self.compression_ratio) == latent or latent in self._reported:
            return
        self._reported.add(latent)
        logging.warning(
            "%s: the content map is %dx%d but the latent is %dx%d: the map is %s. Size the latent from the map "
            "(Get Image Size -> Empty Latent Image), as StyleShot does, to keep all of it undistorted. With an area "
            "conditioning (ConditioningSetArea), the latent is the area's: an area gets the whole map fitted to it, "
            "as with any ControlNet, not the part of the map under it.",
            FEATURE,
            width,
            height,
            latent[1] * self.compression_ratio,
            latent[0] * self.compression_ratio,
            MAP_FITS[self.map_fit].described,
        )


class _Computed:
    """Stands in for the previous ControlNet for one call: returns what it already computed."""

    def __init__(self, control):
        self.control = control

    def get_control(self, *args):
        return self.control
