"""Check that a file is OpenAI CLIP ViT-L/14's vision model (InST's image encoder) from its
safetensors header alone: every tensor's name and shape, without reading 1.7 GB of weights.
ComfyUI's Load CLIP Vision does the loading; this only tells a user whether the right file is there."""

from functools import cache

import torch

from ..models.vision_tower import VisionTower
from . import styleshot
from .weights import check_layout, dtype_names, read_header

WIDTH, LAYERS, MLP, PROJECTION, POSITIONS = 1024, 24, 4096, 768, 257  # 224 px / 14 = 16x16 patches + class
KIND = "CLIP ViT-L/14 vision model (vision_model.*: 24 layers, 1024 wide, 224 px; visual_projection (768, 1024))"
POSITION_IDS = "vision_model.embeddings.position_ids"  # saved by transformers < 4.31; not a weight
TEXT_MODEL = ("text_model.", "text_projection.weight", "logit_scale")  # the OpenAI file holds both towers
_OTHERS = {
    (577, 1024): "CLIP ViT-L/14 at 336 px (InST uses the 224 px model)",  # (positions, width)
    (257, 1280): "CLIP ViT-H/14 (IP-Adapter's image encoder, not InST's)",
    (257, 1664): "CLIP ViT-bigG/14",
    (50, 768): "CLIP ViT-B/32",
    (197, 768): "CLIP ViT-B/16",
}


@cache
def vit_l_layout() -> dict:
    with torch.device("meta"):
        tower = VisionTower(dim=WIDTH, heads=16, mlp=MLP, layers=LAYERS, projection=PROJECTION)
    layout = {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    layout.update(
        {
            "vision_model.embeddings.class_embedding": (WIDTH,),
            "vision_model.embeddings.patch_embedding.weight": (WIDTH, 3, 14, 14),
            "vision_model.embeddings.position_embedding.weight": (POSITIONS, WIDTH),
        }
    )
    return layout


def recognise(header):
    """Name another CLIP vision model (by positions and width) or whatever else a file is."""
    positions = header.get("vision_model.embeddings.position_embedding.weight")
    if positions is None:
        return styleshot.recognise(header)
    shape = tuple(positions.shape)
    if shape == (POSITIONS, WIDTH):
        return None  # a ViT-L/14 with tensors missing or changed: check_layout lists which
    return _OTHERS.get(shape, f"a CLIP vision model {shape[1]} wide with {shape[0]} positions")


def check_vit_l(path) -> str:
    """What the file holds, e.g. "CLIP ViT-L/14 vision model, fp16"; raises ModelFileError otherwise."""
    header = read_header(path)
    vision = {k: v for k, v in header.items() if not k.startswith(TEXT_MODEL) and k != POSITION_IDS}
    check_layout(vision, vit_l_layout(), path, KIND, recognise)
    text = ", with its text model" if any(k.startswith(TEXT_MODEL) for k in header) else ""
    return f"CLIP ViT-L/14 vision model, {dtype_names(vision.values())}{text}"
