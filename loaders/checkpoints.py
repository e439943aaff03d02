"""Tell which Stable Diffusion checkpoint a file is from its safetensors header alone, for the `models`
command: the shipped workflows' Load Checkpoint needs a whole checkpoint (UNet, text encoders and VAE in
one file) of the family they were made for. ComfyUI does the loading; this only tells a user whether the
right file is there, without reading gigabytes of weights."""

import os

from .weights import ModelFileError, dtype_names, read_header

UNET = "model.diffusion_model."
VAE = "first_stage_model."
# The first cross-attention's key projection and the text width it reads tell the family (as ComfyUI's
# own detection does, by context width; SDXL's first level has no attention).
FAMILIES = {
    ("input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", 768): "SD1.x",
    ("input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", 1024): "SD2.x",
    ("input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", 2048): "SDXL",
}
TEXT_ENCODERS = {  # the key prefixes of each family's text encoders in a single-file checkpoint
    "SD1.x": ("cond_stage_model.",),
    "SD2.x": ("cond_stage_model.",),
    "SDXL": ("conditioner.embedders.0.", "conditioner.embedders.1."),
}


def family(header) -> str:
    """'SD1.x', 'SD2.x' or 'SDXL' for a header with a UNet of one of them, else ''."""
    for (key, width), name in FAMILIES.items():
        tensor = header.get(UNET + key)
        if tensor is not None and tensor.ndim == 2 and tensor.shape[1] == width:
            return name
    return ""


def check_checkpoint(path, expected_family) -> str:
    """What the file holds, e.g. "SD1.x checkpoint (UNet, text encoder, VAE), fp16"; raises
    ModelFileError when it is not a whole checkpoint of `expected_family`."""
    name = os.path.basename(path)
    header = read_header(path, skip_non_float=True)
    found = family(header)
    if not found:
        what = (
            "a UNet-less file (a LoRA, a VAE or a text encoder?)"
            if not any(k.startswith(UNET) for k in header)
            else "a UNet of another architecture"
        )
        raise ModelFileError(
            f"{name} is not a Stable Diffusion {expected_family} checkpoint: it holds {what}. "
            f"Choose a {expected_family} checkpoint for this input."
        )
    if found != expected_family:
        raise ModelFileError(
            f"{name} is an {found} checkpoint, and this workflow is made for {expected_family}: "
            f"download the {expected_family} checkpoint it names, or use a workflow made for {found}."
        )
    parts = [prefix for prefix in (*TEXT_ENCODERS[found], VAE) if not any(k.startswith(prefix) for k in header)]
    if parts:
        raise ModelFileError(
            f"{name} holds an {found} UNet without {', '.join(parts)} (the text encoder or VAE): "
            "Load Checkpoint needs the whole checkpoint. Download the checkpoint the workflow names "
            "(a UNet-only file goes in models/diffusion_models for Load Diffusion Model)."
        )
    unet = [tensor for key, tensor in header.items() if key.startswith(UNET)]
    return f"{found} checkpoint (UNet, text encoder, VAE), {dtype_names(unet)}"
