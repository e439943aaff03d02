"""Name what a model file is from its keys (and shapes), to explain a file in the wrong slot: a
loader's refusal then says "It looks like ...", with what to do with that file."""

from .diagnosis import CHOOSE_STYLE_FILE
from .layouts import HED_NETWORK, LINEART_GENERATOR, VIT_L_POSITIONS, VIT_L_WIDTH, hed_layout, lineart_layout

# Other CLIP vision models, by (positions, width) of their position embedding
OTHER_CLIP_VISION = {
    (577, 1024): "CLIP ViT-L/14 at 336 px (InST uses the 224 px model)",
    (257, 1280): "CLIP ViT-H/14 (IP-Adapter's image encoder, not InST's)",
    (257, 1664): "CLIP ViT-bigG/14",
    (50, 768): "CLIP ViT-B/32",
    (197, 768): "CLIP ViT-B/16",
}


def recognise(state_dict):
    """What a state dict (or safetensors header) is, as a phrase with what to do with it, or None."""
    keys = set(state_dict)
    if any(k.startswith("image_encoder.") for k in keys) and any(k.startswith("cnn.") for k in keys):
        return "the StyleShot style-aware encoder (style_aware_encoder.bin): choose it as the style encoder"
    if any(k.startswith(("adapter_modules.", "style_image_proj_modules.")) for k in keys):
        return "a StyleShot adapter (ip.bin): choose it as the StyleShot adapter"
    if "controlnet_cond_embedding.conv_in.weight" in keys:
        return "a ControlNet in diffusers format: load it with ComfyUI's Load ControlNet Model"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "a Stable Diffusion checkpoint: load it with Load Checkpoint"
    if any(k.startswith("vision_model.") for k in keys):
        return "a CLIP vision model: it belongs in models/clip_vision"
    if "image_proj" in keys or "ip_adapter" in keys or any(k.endswith("to_k_ip.weight") for k in keys):
        return "an IP-Adapter model, not StyleShot: use an IP-Adapter pack"
    one_vector_set = len(keys) == 1 and getattr(next(iter(state_dict.values())), "ndim", 0) in (1, 2)
    if one_vector_set or keys & {"emb_params", "clip_l"}:  # diffusers learned_embeds, kohya, SDXL
        return f"a textual-inversion embedding: {CHOOSE_STYLE_FILE}"
    for description, layout in ((HED_NETWORK, hed_layout()), (LINEART_GENERATOR, lineart_layout())):
        if keys == set(layout):
            return f"the {description}"
    return None


def recognise_clip_vision(header):
    """For the CLIP ViT-L/14 slot: name another CLIP vision model by its positions and width, or
    whatever else the file is. None for a ViT-L/14 with tensors missing or changed (the layout check
    lists which)."""
    positions = header.get("vision_model.embeddings.position_embedding.weight")
    if positions is None:
        return recognise(header)
    shape = tuple(positions.shape)
    if shape == (VIT_L_POSITIONS, VIT_L_WIDTH):
        return None
    return OTHER_CLIP_VISION.get(shape, f"a CLIP vision model {shape[1]} wide with {shape[0]} positions")
