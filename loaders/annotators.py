"""Load the HED and lineart annotator files (lllyasviel/Annotators) into their networks."""

from ..models.hed_network import HEDNetwork
from ..models.lineart_generator import LineartGenerator
from .layouts import HED_NETWORK, LINEART_GENERATOR, empty, hed_layout, lineart_layout
from .recognise import recognise
from .weights import check_layout, materialize, read_state_dict


def read_hed_weights(path) -> dict:
    """The checked state dict of a HED file."""
    state_dict = read_state_dict(path)
    check_layout(state_dict, hed_layout(), path, HED_NETWORK, recognise)
    return state_dict


def read_lineart_weights(path) -> dict:
    """The checked state dict of a lineart generator file (fine or coarse: one layout)."""
    state_dict = read_state_dict(path)
    check_layout(state_dict, lineart_layout(), path, LINEART_GENERATOR, recognise)
    return state_dict


def load_hed(path) -> HEDNetwork:
    """`ControlNetHED.pth` as published (fp16 plain state dict) or any same-layout file -> fp32 net
    (an fp32 master copy whatever the file stores; callers cast for compute)."""
    return materialize(empty(HEDNetwork), read_hed_weights(path))


def load_lineart(path) -> LineartGenerator:
    """`sk_model.pth` / `sk_model2.pth` as published (fp32 plain state dict) -> generator."""
    return materialize(empty(LineartGenerator), read_lineart_weights(path))
