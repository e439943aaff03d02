"""StyleAligned batch alignment as patches on a clone of a ComfyUI MODEL (docs/design/stylealigned.md 5).

- Self-attention (attn1) of the chosen UNet blocks: a replace patch per (block, id) running
  models.shared_attention per batch chunk, chunks taken from `cond_or_uncond`.
- GroupNorms (optional): object patches on their `forward`, which ComfyUI sets when it loads this
  clone and restores when it unloads it, so the shared model is never changed for other users.
  A GroupNorm sees no transformer_options, so a DIFFUSION_MODEL wrapper records each UNet call's
  chunk layout for them.
"""

import logging
from dataclasses import asdict, dataclass

import comfy.patcher_extension
from torch import nn

from ..models.shared_attention import shared_attention, shared_group_norm
from .attention import ChainedPatch, keys_reaching
from .model_requirements import require_unet

WRAPPER_KEY = "style_suite.style_aligned"

# Which self-attention layers take part, by UNet block.
LAYER_BLOCKS = {
    "all (published)": ("input", "middle", "output"),
    "input blocks": ("input",),
    "middle block": ("middle",),
    "output blocks": ("output",),
    "middle and output blocks": ("middle", "output"),
}


@dataclass(frozen=True)
class AlignSettings:
    share: bool = True
    adain_queries: bool = True
    adain_keys: bool = True
    adain_values: bool = False
    score_scale: float = 1.0
    score_shift: float = 0.0


def attention_blocks(network):
    """(block, id, transformer depth) of every UNet block holding self-attention, in execution order."""
    blocks = [("input", i, b) for i, b in enumerate(network.input_blocks)]
    blocks += [("middle", 0, network.middle_block)]
    blocks += [("output", i, b) for i, b in enumerate(network.output_blocks)]
    depths = [(name, i, sum(hasattr(m, "attn1") for m in block.modules())) for name, i, block in blocks]
    return [(name, i, depth) for name, i, depth in depths if depth]


def _rows_per_chunk(q, extra):
    """Rows per chunk of this attention call, or None where sharing does not apply: a chunk of one
    image or a single token (nothing to share; AdaIN's variance would be NaN), or a batch or token
    layout another patch changed (HyperTile, ToMe, context windows)."""
    chunks = len(extra.get("cond_or_uncond") or ())
    rows, tokens = q.shape[0], q.shape[1]
    if chunks == 0 or rows % chunks or rows // chunks < 2 or tokens < 2:
        return None
    shape = extra.get("activations_shape")
    if shape is not None and (shape[0] != rows or shape[-2] * shape[-1] != tokens):
        return None
    return rows // chunks


class SharedAttention(ChainedPatch):
    """attn1 replace: StyleAligned's shared attention, per chunk."""

    def __init__(self, settings, previous=None):
        super().__init__(previous)
        self.settings = settings
        self._options = asdict(settings)  # once, not per layer call: asdict copies recursively

    def __call__(self, q, k, v, extra):
        rows_per_chunk = _rows_per_chunk(q, extra)
        if rows_per_chunk is None:
            return self.attend(q, k, v, extra)
        # another pack's patch runs on the shared keys, without the shift (it takes no mask)
        return shared_attention(
            q, k, v, rows_per_chunk, lambda q, k, v, mask: self.attend(q, k, v, extra, mask), **self._options
        )

    def __deepcopy__(self, memo):
        return self  # immutable: MODEL.clone() may share it


class BatchLayout:
    """DIFFUSION_MODEL wrapper: the rows per chunk of the UNet call in progress, for the GroupNorms."""

    def __init__(self):
        self.rows = self.rows_per_chunk = None

    def __call__(self, executor, x, *args, **kwargs):
        transformer_options = args[4] if len(args) > 4 else kwargs.get("transformer_options", {})
        chunks = len(transformer_options.get("cond_or_uncond") or ())
        rows = x.shape[0]
        self.rows, self.rows_per_chunk = rows, (rows // chunks if chunks and rows % chunks == 0 else None)
        try:
            return executor(x, *args, **kwargs)
        finally:
            self.rows = self.rows_per_chunk = None

    def __deepcopy__(self, memo):
        return self  # the GroupNorm patches hold this object: copies must not split them


class SharedGroupNorm:
    """Object patch for one GroupNorm's forward. `previous` is another object patch that was on it,
    or None for the module's own forward (taken from its class: a loaded clone may have patched
    the attribute)."""

    def __init__(self, module, previous, layout):
        self.module = module
        self.previous = previous
        self.layout = layout

    def norm(self, x):
        return self.previous(x) if self.previous is not None else type(self.module).forward(self.module, x)

    def __call__(self, x):
        rows_per_chunk = self.layout.rows_per_chunk
        if rows_per_chunk is None or rows_per_chunk < 2 or x.shape[0] != self.layout.rows:
            return self.norm(x)
        return shared_group_norm(self.norm, x, rows_per_chunk)


def apply_batch_align(model, settings, blocks, share_group_norm):
    """A clone of `model` with StyleAligned on the self-attention of `blocks` (LAYER_BLOCKS values)."""
    network = require_unet(model.model, "StyleAligned Batch Align")
    patched = model.clone()
    replaced = patched.model_options["transformer_options"].get("patches_replace", {}).get("attn1", {})
    for block, block_id, depth in attention_blocks(network):
        if block not in blocks:
            continue
        for key in keys_reaching(replaced, block, block_id, depth):  # wrap whatever ComfyUI would run there
            previous = replaced.get(key)
            if isinstance(previous, SharedAttention):  # Batch Align applied again: the new settings win
                previous = previous.previous
            elif previous is not None and settings.score_shift:
                logging.warning(
                    "StyleAligned: %s already has a self-attention patch from another node; it is kept, "
                    "without the score shift on that layer",
                    key,
                )
            patched.set_model_patch_replace(SharedAttention(settings, previous), "attn1", *key)
    _share_group_norms(patched, network, share_group_norm)
    return patched


def _share_group_norms(patched, network, share):
    """GroupNorm sharing on or off on `patched`; an earlier Batch Align's sharing is replaced."""
    wrappers = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
    patched.remove_wrappers_with_key(wrappers, WRAPPER_KEY)
    layout = BatchLayout() if share else None
    if share:
        patched.add_wrapper_with_key(wrappers, WRAPPER_KEY, layout)
    for path, module in network.named_modules():
        if not isinstance(module, nn.GroupNorm):
            continue
        key = f"diffusion_model.{path}.forward"
        previous = patched.object_patches.pop(key, None)
        if isinstance(previous, SharedGroupNorm):
            previous = previous.previous
        if share:
            patched.add_object_patch(key, SharedGroupNorm(module, previous, layout))
        elif previous is not None:
            patched.add_object_patch(key, previous)


def has_batch_align(model_options):
    """Whether StyleAligned Batch Align patched the model these options belong to."""
    replaced = model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})
    return any(isinstance(patch, SharedAttention) for patch in replaced.values())
