"""Read a style-token file: an InST checkpoint or a textual-inversion embedding (docs/design/inst.md 1).

- InST (`embeddings.pt`, `embeddings_gs-*.pt`): {"string_to_token", "attention": pickled ldm
  `Attentions`}. It stores no vector: the inversion network computes one from a style image.
- ArtBank's InST variant adds "learnable_vector": the network's input, so the token is fixed.
- Textual inversion: A1111 / rinongal `.pt` ("string_to_param"), diffusers `learned_embeds`
  ({"<token>": vector}), kohya ("emb_params") and SDXL ("clip_l") safetensors: fixed vectors.
"""

import os
from dataclasses import dataclass

import torch

from ..models.inst_network import DIM, InversionNetwork
from .diagnosis import INST_PICKLED_CLASS
from .layouts import INST_NETWORK, empty, inst_layout
from .recognise import recognise
from .restricted_pickle import Stub, restricted_load
from .weights import ModelFileError, check_layout, materialize, read_weights

MAX_VECTORS = 75  # one CLIP chunk holds 75 prompt tokens
_WIDTHS = {1024: "SD2.x's OpenCLIP-H", 1280: "SDXL's OpenCLIP-bigG"}


@dataclass(frozen=True)
class StyleFile:
    """`network` (InST: computes the token from an image embedding) or `vectors` [n, 768] (fixed
    tokens), and what kind of file it is, for messages."""

    kind: str
    network: InversionNetwork | None = None
    vectors: torch.Tensor | None = None


def load_style_file(path) -> StyleFile:
    """Read, recognise and check a style-token file; nothing in it is executed (restricted_pickle)."""
    content = read_weights(path, unpickle=restricted_load)
    name = os.path.basename(path)
    if not isinstance(content, dict):
        raise ModelFileError(f"{name} holds a {type(content).__name__}: {_expected()}")
    if "attention" in content:
        return _inst(content, path)
    if "string_to_param" in content:
        params = content["string_to_param"]
        params = params.tensors() if isinstance(params, Stub) else params  # rinongal's ParameterDict
        if not isinstance(params, dict) or not params:
            raise ModelFileError(f"{name} has an empty or unreadable string_to_param: {_expected()}")
        return StyleFile(
            kind="textual inversion (string_to_param)", vectors=_vectors(next(iter(params.values())), name)
        )
    for key, kind in (("clip_l", "textual inversion (clip_l)"), ("emb_params", "textual inversion (emb_params)")):
        if key in content:
            return StyleFile(kind=kind, vectors=_vectors(content[key], name))
    tensors = [value for value in content.values() if isinstance(value, torch.Tensor)]
    if len(content) == 1 and tensors:
        return StyleFile(kind=f"textual inversion ({next(iter(content))})", vectors=_vectors(tensors[0], name))
    looks_like = recognise(content) if all(isinstance(key, str) for key in content) else None
    if looks_like:  # another input's file
        raise ModelFileError(
            f"{name} is not an InST or textual-inversion file: it looks like {looks_like}. "
            "Choose the right file for this input."
        )
    raise ModelFileError(f"{name} holds the keys {', '.join(map(str, list(content)[:6]))}: {_expected()}")


def _inst(content, path):
    name = os.path.basename(path)
    attention = content["attention"]
    extra = [key for key in content if key not in ("attention", "string_to_token", "learnable_vector")]
    pickled = type(attention).pickled_class if isinstance(attention, Stub) else type(attention).__name__
    if extra or pickled != INST_PICKLED_CLASS:
        raise ModelFileError(
            f"{name} has an 'attention' entry but is not an InST file (it holds {', '.join(map(str, content))}, "
            f"attention is a {pickled}). ProSpect, LSAST and "
            "timestep-conditioned forks compute several step-dependent vectors, a different method."
        )
    state_dict = attention.tensors()
    _require_finite(state_dict.values(), name)
    check_layout(state_dict, inst_layout(), path, INST_NETWORK)
    network = materialize(empty(InversionNetwork), state_dict)
    if "learnable_vector" not in content:
        return StyleFile(kind="InST", network=network)
    vector = _vectors(content["learnable_vector"], name)
    with torch.no_grad():
        return StyleFile(kind="InST with a learned input vector (ArtBank)", vectors=network.token(vector))


def _vectors(tensor, name):
    """A token tensor as fp32 [n, 768], or a sentence saying why it cannot be used."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.ndim == 0:
        raise ModelFileError(f"{name}'s embedding is a {type(tensor).__name__}, not a tensor of floats")
    width = tensor.shape[-1]
    if width != DIM:
        model = _WIDTHS.get(width, f"a {width}-wide text encoder")
        raise ModelFileError(
            f"{name} holds {width}-wide vectors, made for {model}; InST Text Encode writes into SD1.x's "
            f"{DIM}-wide CLIP-L. Use an embedding trained for SD1.x."
        )
    vectors = tensor.detach().reshape(-1, DIM).float().clone()
    if len(vectors) > MAX_VECTORS:
        raise ModelFileError(f"{name} holds {len(vectors)} vectors; a prompt chunk holds at most {MAX_VECTORS}")
    _require_finite([vectors], name)
    return vectors


def _require_finite(tensors, name):
    if not all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()):
        raise ModelFileError(f"{name} holds NaN or infinite values: the file is damaged; download it again")


def _expected():
    return (
        "expected an InST checkpoint (embeddings.pt with string_to_token and attention) or a textual-inversion "
        "embedding (A1111 .pt, diffusers learned_embeds, or safetensors with clip_l / emb_params)"
    )
