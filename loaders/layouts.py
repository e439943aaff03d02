"""The published files' key layouts ({key: shape}) that the loaders check files against, and what
each file is called in messages. A layout is read off the pack's own network built on the meta
device (no memory, no random init), plus the keys a published file holds that the network leaves
unused; nothing is built until a layout is first asked for."""

from functools import cache

import torch

from ..models.hed_network import HEDNetwork
from ..models.inst_network import InversionNetwork
from ..models.lineart_generator import LineartGenerator
from ..models.style_adapter import StyleShotAdapter
from ..models.style_encoder import StyleAwareEncoder
from ..models.vision_tower import VisionTower
from .model_files import HED, LINEART_COARSE, LINEART_FINE

HED_NETWORK = f"HED network ({HED.name}, 37 tensors: norm, block1-5)"
LINEART_GENERATOR = f"lineart generator ({LINEART_FINE.name} or {LINEART_COARSE.name}, 24 tensors: model0-model4)"
STYLE_ENCODER = "StyleShot style-aware encoder (style_aware_encoder.bin: image_encoder.*, cnn.*, 608 tensors)"
STYLE_ADAPTER = "StyleShot adapter (ip.bin: adapter_modules.*, style_image_proj_modules.*)"
CONTENT_FUSION = "StyleShot content-fusion encoder (the controlnet.* part of ip.bin, 340 tensors)"
INST_NETWORK = "InST network (ldm Attentions: attn1, attn2, net; 12 tensors)"
VIT_L = "CLIP ViT-L/14 vision model (vision_model.*: 24 layers, 1024 wide, 224 px; visual_projection (768, 1024))"

# CLIP's own patch embedding is in style_aware_encoder.bin but unused: StyleShot's experts replace it.
UNUSED_CLIP_EMBEDDINGS = {
    "image_encoder.vision_model.embeddings.class_embedding": (1280,),
    "image_encoder.vision_model.embeddings.patch_embedding.weight": (1280, 3, 14, 14),
    "image_encoder.vision_model.embeddings.position_embedding.weight": (257, 1280),
}
# OpenAI CLIP ViT-L/14's vision model: width, layers, MLP width, projection, positions (224 px / 14 = 16x16 + class)
VIT_L_WIDTH, VIT_L_LAYERS, VIT_L_MLP, VIT_L_PROJECTION, VIT_L_POSITIONS = 1024, 24, 4096, 768, 257


def empty(network_class, **config):
    """The network without memory or random init (meta tensors): its weights come from a file."""
    with torch.device("meta"):
        return network_class(**config)


def layout_of(module) -> dict:
    return {key: tuple(tensor.shape) for key, tensor in module.state_dict().items()}


@cache
def hed_layout() -> dict:
    return layout_of(empty(HEDNetwork))


@cache
def lineart_layout() -> dict:
    return layout_of(empty(LineartGenerator))


@cache
def encoder_layout() -> dict:
    return {**layout_of(empty(StyleAwareEncoder)), **UNUSED_CLIP_EMBEDDINGS}


@cache
def adapter_layout() -> dict:
    return layout_of(empty(StyleShotAdapter))


@cache
def inst_layout() -> dict:
    return layout_of(empty(InversionNetwork))


@cache
def vit_l_layout() -> dict:
    tower = empty(
        VisionTower, dim=VIT_L_WIDTH, heads=16, mlp=VIT_L_MLP, layers=VIT_L_LAYERS, projection=VIT_L_PROJECTION
    )
    return {
        **layout_of(tower),
        "vision_model.embeddings.class_embedding": (VIT_L_WIDTH,),
        "vision_model.embeddings.patch_embedding.weight": (VIT_L_WIDTH, 3, 14, 14),
        "vision_model.embeddings.position_embedding.weight": (VIT_L_POSITIONS, VIT_L_WIDTH),
    }
