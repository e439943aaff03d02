"""Batches for StyleAligned: conditioning with one row per image (a prompt per image, the reference
prompt first) and the latent batch with the reference image first."""

from math import lcm

import torch


def stack_rows(entries):
    """One CONDITIONING entry whose rows are those of `entries` ([cond, options] pairs) in order.
    Token lengths are repeated to a common multiple, as ComfyUI does when it batches prompts of
    other lengths (attention over repeated tokens is unchanged); pooled outputs are stacked; the
    other options are the last entry's."""
    length = lcm(*(cond.shape[1] for cond, _ in entries))
    like = entries[0][0]
    cond = torch.cat([cond.repeat(1, length // cond.shape[1], 1).to(like) for cond, _ in entries])
    options = dict(entries[-1][1])
    pooled = [entry_options.get("pooled_output") for _, entry_options in entries]
    if all(p is not None for p in pooled):
        options["pooled_output"] = torch.cat([p.to(pooled[0]) for p in pooled])
    return [cond, options]


def with_reference_row(conditioning, rows, reference=None):
    """CONDITIONING for a batch of 1 + `rows` latents, the reference first: each entry's rows become
    [reference row; its rows], the reference row from `reference` (a CONDITIONING, first entry)
    or, without one, the entry's own first row. One-row entries without a reference are returned
    as they are (ComfyUI repeats them over the batch)."""
    result = []
    for cond, options in conditioning:
        if reference is None and cond.shape[0] == 1:
            result.append([cond, options])
            continue
        ref_cond, ref_options = reference[0] if reference is not None else (cond, options)
        ref_options = {"pooled_output": options.get("pooled_output"), **ref_options}
        if ref_options["pooled_output"] is not None:
            ref_options["pooled_output"] = ref_options["pooled_output"][:1]
        targets = dict(options)
        if options.get("pooled_output") is not None:
            targets["pooled_output"] = _rows(options["pooled_output"], rows, "pooled prompt")
        result.append(stack_rows([[ref_cond[:1], ref_options], [_rows(cond, rows, "prompt"), targets]]))
    return result


def _rows(tensor, rows, what):
    if tensor.shape[0] == rows:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand(rows, *tensor.shape[1:])
    raise ValueError(
        f"the {what} has {tensor.shape[0]} rows but the latent batch has {rows} images: give one row, or one per image"
    )


def reference_batch(latent, reference, keep_reference):
    """LATENT of 1 + N images with `reference` (samples [1, C, H, W]) as row 0. `keep_reference`: a
    noise mask row of 0 keeps row 0 at the reference (re-noised at every step, renoise mode); else
    row 0 is denoised like the others (the wrapper overwrites it). A noise mask the latent already
    had is kept for its rows."""
    samples = latent["samples"]
    batch = {"samples": torch.cat([reference.to(samples), samples])}
    mask = latent.get("noise_mask")
    if mask is None and not keep_reference:
        return batch
    if mask is None:
        mask = torch.ones(1, 1, *samples.shape[-2:])
    mask = mask.reshape(-1, 1, *mask.shape[-2:])
    first = torch.full_like(mask[:1], 0.0 if keep_reference else 1.0)
    batch["noise_mask"] = torch.cat([first, _rows(mask, samples.shape[0], "noise mask")])
    return batch
