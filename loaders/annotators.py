"""Load the HED and lineart annotator files (lllyasviel/Annotators) into their networks."""

from functools import cache

import torch

from ..preprocessors.hed import HEDNetwork
from ..preprocessors.lineart import LineartGenerator
from .model_files import HED, LINEART_FINE
from .weights import check_layout, materialize, read_state_dict

HED_KIND = f"HED network ({HED.name}, 37 tensors: norm, block1-5)"
LINEART_KIND = f"lineart generator ({LINEART_FINE.name} or sk_model2.pth, 24 tensors: model0-model4)"


_NETWORKS = {HED_KIND: HEDNetwork, LINEART_KIND: LineartGenerator}


def _empty(kind):
    """The network without memory or random init (meta tensors): its weights come from the file."""
    with torch.device("meta"):
        return _NETWORKS[kind]()


@cache
def _layouts() -> dict:
    return {kind: {key: tuple(t.shape) for key, t in _empty(kind).state_dict().items()} for kind in _NETWORKS}


def recognise(state_dict):
    """Name the annotator a state dict is, if it is one (used to explain a file in the wrong slot)."""
    keys = set(state_dict)
    for kind, layout in _layouts().items():
        if keys == set(layout):
            return f"the {kind}"
    return None


def recognise_any(state_dict):
    """Name any model file the pack knows (styleshot.recognise, which imports this module, knows them all)."""
    from .styleshot import recognise as recognise_model_file

    return recognise_model_file(state_dict)


def read_annotator_weights(path, kind) -> dict:
    """The state dict of an annotator file, checked against the layout of `kind` (HED_KIND, LINEART_KIND)."""
    state_dict = read_state_dict(path)
    check_layout(state_dict, _layouts()[kind], path, kind, recognise_any)
    return state_dict


def _load(path, kind):
    # fp32 master copy whatever the file stores (the HED file is fp16); callers cast for compute.
    return materialize(_empty(kind), read_annotator_weights(path, kind))


def load_hed(path) -> HEDNetwork:
    """`ControlNetHED.pth` as published (fp16 plain state dict) or any same-layout file -> fp32 net."""
    return _load(path, HED_KIND)


def load_lineart(path) -> LineartGenerator:
    """`sk_model.pth` / `sk_model2.pth` as published (fp32 plain state dict) -> generator."""
    return _load(path, LINEART_KIND)
