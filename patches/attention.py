"""What the attention patches share: ComfyUI's own attention call, and the chaining of a patch onto
one that already sat on the same layer."""

import comfy.ldm.modules.attention as attention_module

# Newer ComfyUI lets other packs override attention through transformer_options; older ones
# do not accept the argument.
_PASSES_OPTIONS = hasattr(attention_module, "wrap_attn")


def attention(q, k, v, extra, mask=None):
    """What ComfyUI's own attention computes from projected q, k, v (whichever backend it chose);
    k and v may have more tokens than q, `mask` is additive."""
    options = {"transformer_options": extra} if _PASSES_OPTIONS else {}
    return attention_module.optimized_attention(
        q, k, v, extra["n_heads"], mask=mask, attn_precision=extra.get("attn_precision"), **options
    )


def keys_reaching(replaced, block, block_id, depth):
    """The replace-patch keys through which ComfyUI runs the attention of UNet block (block, id),
    whose transformer has `depth` blocks: for each block index, (block, id, index) where a patch has
    that key, else (block, id). ComfyUI's BasicTransformerBlock looks them up in that order;
    `replaced` is the patches_replace dict of one attention (attn1 or attn2)."""
    keys = [(block, block_id, i) if (block, block_id, i) in replaced else (block, block_id) for i in range(depth)]
    return list(dict.fromkeys(keys))


class ChainedPatch:
    """A replace patch that keeps the patch it displaced in `previous` and calls it instead of
    plain attention. ComfyUI moves patches with the UNet (`to`) and loads the ModelPatchers they
    name (`models`): both are passed on to the previous patch."""

    def __init__(self, previous=None):
        self.previous = previous

    def attend(self, q, k, v, extra, mask=None):
        """The displaced patch (which takes no mask), or ComfyUI's attention with `mask`."""
        return self.previous(q, k, v, extra) if self.previous is not None else attention(q, k, v, extra, mask)

    def to(self, device_or_dtype):
        if hasattr(self.previous, "to"):
            self.previous = self.previous.to(device_or_dtype)
        return self

    def models(self):
        return self.previous.models() if hasattr(self.previous, "models") else []
