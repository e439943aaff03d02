"""Check that a file is OpenAI CLIP ViT-L/14's vision model (InST's image encoder) from its
safetensors header alone: every tensor's name and shape, without reading 1.7 GB of weights.
ComfyUI's Load CLIP Vision does the loading; this only tells a user whether the right file is there."""

from .layouts import VIT_L, vit_l_layout
from .recognise import recognise_clip_vision
from .weights import check_layout, dtype_names, read_header

POSITION_IDS = "vision_model.embeddings.position_ids"  # saved by transformers < 4.31; not a weight
TEXT_MODEL = ("text_model.", "text_projection.weight", "logit_scale")  # the OpenAI file holds both towers


def check_vit_l(path) -> str:
    """What the file holds, e.g. "CLIP ViT-L/14 vision model, fp16"; raises ModelFileError otherwise."""
    header = read_header(path)
    vision = {k: v for k, v in header.items() if not k.startswith(TEXT_MODEL) and k != POSITION_IDS}
    check_layout(vision, vit_l_layout(), path, VIT_L, recognise_clip_vision)
    text = ", with its text model" if any(k.startswith(TEXT_MODEL) for k in header) else ""
    return f"CLIP ViT-L/14 vision model, {dtype_names(vision.values())}{text}"
