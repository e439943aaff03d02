"""Load torch pickles that hold whole modules (InST's `embeddings.pt`) without running anything.

`torch.load(weights_only=True)` refuses InST files: they pickle `ldm` classes, not just tensors.
This unpickler answers every global a file asks for from a fixed list. Tensor rebuilding and plain
containers are the real functions; every module class (InST's two ldm classes and the torch.nn
containers inside them) becomes an inert `Stub` that only holds the pickled attributes, so none
of those classes' code, and nothing else, runs. Anything else is refused before it is created.
"""

import pickle
import sys
import warnings
from collections import OrderedDict

import torch
from torch import nn

_REAL = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,  # protocol-2 pickles written by Python 2 era code paths
}
MODULE_CLASSES = (
    "ldm.modules.embedding_manager.Attentions",
    "ldm.modules.attention.CrossAttention",
    "torch.nn.modules.linear.Linear",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.container.ParameterDict",  # rinongal/textual_inversion's string_to_param
    "torch.nn.modules.dropout.Dropout",
)


class Stub(nn.Module):
    """Stands in for a pickled module class: nn.Module's own __setstate__ restores its attributes
    (parameters, submodules, flags); `tensors` reads the weights. `pickled_class` names the class
    the file asked for. It has no forward."""

    pickled_class = ""

    def tensors(self, prefix=""):
        """{dotted name: tensor} of the parameters and buffers of this stub and its sub-stubs, read
        from the restored attributes directly (state_dict() would call hooks the file could set)."""
        state = vars(self)
        found = {
            f"{prefix}{name}": value
            for key in ("_parameters", "_buffers")
            for name, value in dict(state.get(key) or {}).items()
            if isinstance(value, torch.Tensor)
        }
        for name, child in dict(state.get("_modules") or {}).items():
            if isinstance(child, Stub):
                found.update(child.tensors(f"{prefix}{name}."))
        return found


_STUBS = {name: type(name.rsplit(".", 1)[1], (Stub,), {"pickled_class": name}) for name in MODULE_CLASSES}


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, qualified):
        super().__init__(f"the file asks for {qualified}")
        self.qualified = qualified


class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        qualified = f"{module}.{name}"
        if (module, name) in _REAL:
            return _REAL[(module, name)]
        if qualified in _STUBS:
            return _STUBS[qualified]
        raise RefusedGlobal(qualified)


def load(file, **kwargs):
    """pickle.load with the restricted Unpickler (torch reads a legacy file's header with it)."""
    return Unpickler(file, **kwargs).load()


def restricted_load(path):
    """The object pickled in a torch file (zip or legacy format), on the CPU. Raises RefusedGlobal
    for anything outside the lists above; torch's own errors for broken files."""
    with warnings.catch_warnings():  # legacy files carry module sources, which the stubs have none of
        warnings.filterwarnings("ignore", "Couldn't retrieve source code", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=sys.modules[__name__])
