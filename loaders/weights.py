"""Read weight files without executing anything, and check them against an expected layout."""

import os
import pickle

import torch
from safetensors.torch import load_file

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and what to do."""


def read_state_dict(path) -> dict:
    """A flat {name: tensor} dict from safetensors or a torch pickle loaded with weights_only=True.

    weights_only refuses any pickle that asks for a global outside plain tensors and containers,
    so a file that would run code when loaded is refused before any of it runs.
    """
    name = os.path.basename(path)
    if os.path.getsize(path) == 0:
        raise ModelFileError(f"{name} is empty (0 bytes): the download did not finish; download it again")
    try:
        if path.lower().endswith(SAFETENSORS_SUFFIXES):
            state_dict = load_file(path)
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelFileError(
            f"{name} was refused: loading it would need more than plain tensors ({_first_line(error)}). "
            "Only use weight files from the sources listed in the README."
        ) from None
    except Exception as error:  # truncated zips, foreign formats: torch and safetensors raise many types
        raise ModelFileError(
            f"{name} could not be read as a weights file ({type(error).__name__}: {_first_line(error)}). "
            "It may be truncated or not a model file: download it again."
        ) from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ModelFileError(f"{name} holds a {type(state_dict).__name__}, not a flat dictionary of tensors")
    return state_dict


def check_layout(state_dict, expected, path, kind, recognise=None) -> None:
    """Refuse a state dict whose keys or shapes differ from `expected` ({key: shape}).

    The message names the file, the first mismatches and, through `recognise(state_dict)`, what
    the file looks like instead (for example another slot's file).
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} is {tuple(state_dict[k].shape)}, expected {tuple(expected[k])}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    if not (missing or unexpected or wrong):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes (first: {'; '.join(wrong[:3])})")
    looks_like = recognise(state_dict) if recognise else None
    hint = f" It looks like {looks_like}." if looks_like else ""
    raise ModelFileError(
        f"{os.path.basename(path)} is not a {kind}: {', '.join(problems)}.{hint} "
        "Choose the right file for this input."
    )


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
