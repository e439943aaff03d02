"""Read and write weight files without executing anything; check them against an expected layout.
Why a file could not be read at all is worked out in diagnosis.py."""

import json
import os
from contextlib import contextmanager

import torch
from safetensors import safe_open

from .diagnosis import CHOOSE_STYLE_FILE, SAFETENSORS_SUFFIXES, what_is_wrong


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and what to do."""


def read_weights(path, unpickle=None, keep=None):
    """What a weights file holds: safetensors as {name: tensor}, a torch pickle as whatever it
    pickles, loaded by `unpickle(path)` (default: torch.load with weights_only=True).

    Both unpicklers refuse any global outside their lists before creating it, so a file that
    would run code when loaded is refused before any of it runs. Safetensors are memory-mapped:
    keys dropped by `keep(name) -> bool` (ip.bin's 3.5 GB UNet copy) are never read.
    """
    with _reading(path):
        if path.lower().endswith(SAFETENSORS_SUFFIXES):
            with safe_open(path, framework="pt") as file:
                return {k: file.get_tensor(k) for k in file.keys() if keep is None or keep(k)}
        return (unpickle or _torch_load)(path)


def read_header(path, skip_non_float=False) -> dict:
    """A safetensors file's tensors as {name: meta tensor}: shapes and dtypes, no data read (whatever
    the file's name; safetensors checks that the data the header lists is all there). Tensors stored
    in other dtypes are refused, or left out with `skip_non_float` (a checkpoint's int64 position ids)."""
    with _reading(path), safe_open(path, framework="pt") as file:
        slices = {k: file.get_slice(k) for k in file.keys()}
        if skip_non_float:
            slices = {k: s for k, s in slices.items() if s.get_dtype() in _TORCH_DTYPES}
        codes = {s.get_dtype() for s in slices.values()} - set(_TORCH_DTYPES)
        if codes:
            raise ModelFileError(
                f"{os.path.basename(path)} stores {', '.join(sorted(codes))} tensors; the model files "
                "this pack reads store fp32, fp16 or bf16: choose the file the README lists"
            )
        return {
            k: torch.empty(s.get_shape(), dtype=_TORCH_DTYPES[s.get_dtype()], device="meta") for k, s in slices.items()
        }


@contextmanager
def _reading(path):
    """Turn what torch and safetensors raise for a file they cannot read into one ModelFileError."""
    name = os.path.basename(path)
    if os.path.getsize(path) == 0:
        raise ModelFileError(f"{name} is empty (0 bytes): the download did not finish; download it again")
    try:
        yield
    except ModelFileError:
        raise
    except Exception as error:
        if out_of_memory(error):  # not the file's fault: ComfyUI reports it and unloads models
            raise  # truncated zips, foreign formats: torch and safetensors raise many types
        raise ModelFileError(f"{name} {what_is_wrong(path, error)}") from None


def out_of_memory(error) -> bool:
    """Whether `error` is running out of memory: torch's OutOfMemoryError (GPU), MemoryError, or the
    RuntimeError torch's CPU allocator raises."""
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or "can't allocate memory" in str(error)


def read_state_dict(path, keep=None) -> dict:
    """A flat {name: floating-point tensor} dict from safetensors or a weights-only torch pickle
    (read_weights), keys dropped by `keep` left out. Both formats are memory-mapped: a file of the
    wrong kind is refused by the caller's layout check before its data is read."""
    state_dict = read_weights(path, keep=keep)
    name = os.path.basename(path)
    if isinstance(state_dict, dict) and "string_to_param" in state_dict:
        raise ModelFileError(
            f"{name} is a textual-inversion embedding (string_to_param), not weights for this input: "
            f"{CHOOSE_STYLE_FILE}."
        )
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ModelFileError(f"{name} holds a {type(state_dict).__name__}, not a flat dictionary of tensors")
    state_dict = {k: v for k, v in state_dict.items() if keep is None or keep(k)}
    not_float = [k for k, v in state_dict.items() if not v.is_floating_point()]
    if not_float:
        raise ModelFileError(
            f"{name} stores {dtype_names(state_dict[k] for k in not_float)} tensors where network weights are "
            f"floating point (first: {not_float[0]}): it is not a model file for this input"
        )
    return state_dict


def _torch_load(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):  # only the legacy (non-zip) format cannot be memory-mapped
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def materialize(empty_module, state_dict):
    """Fill a module built on the meta device from a checked state dict: fp32 CPU weights,
    whatever the file stores, copied out of the (possibly memory-mapped) file."""
    module = empty_module.to_empty(device="cpu").float()
    module.load_state_dict(state_dict)
    return module.eval().requires_grad_(False)


_SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_TORCH_DTYPES = {code: dtype for dtype, code in _SAFETENSORS_DTYPES.items()}


def write_safetensors(path, tensors: dict, dtype=None, metadata=None) -> None:
    """Write `tensors` as safetensors one tensor at a time (peak memory: the largest tensor, not
    the file). Floating tensors are cast to `dtype` when given. The file appears atomically."""

    def stored_dtype(t):
        return dtype if dtype is not None and t.is_floating_point() else t.dtype

    header, offset = {}, 0
    for key, tensor in tensors.items():
        size = tensor.numel() * torch.empty((), dtype=stored_dtype(tensor)).element_size()
        header[key] = {
            "dtype": _SAFETENSORS_DTYPES[stored_dtype(tensor)],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
    partial = f"{path}.partial"
    try:
        with open(partial, "wb") as file:
            file.write(len(encoded).to_bytes(8, "little"))
            file.write(encoded)
            for tensor in tensors.values():
                data = tensor.to(stored_dtype(tensor)).contiguous().reshape(-1).view(torch.uint8)
                file.write(data.numpy().tobytes())
        os.replace(partial, path)
    except BaseException:  # a full disk or an interrupt must not leave a multi-GB .partial behind
        if os.path.exists(partial):
            os.remove(partial)
        raise


def check_layout(state_dict, expected, path, file_description, recognise=None) -> None:
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
    article = "an" if file_description[0] in "AEIOU" else "a"
    raise ModelFileError(
        f"{os.path.basename(path)} is not {article} {file_description}: {', '.join(problems)}.{hint} "
        "Choose the right file for this input."
    )


def dtype_names(tensors) -> str:
    """How tensors are stored, for messages: "fp16", "fp16 and fp32"."""
    names = {dtype: f"fp{dtype.itemsize * 8}" for dtype in (torch.float16, torch.float32, torch.float64)}
    return " and ".join(sorted({names.get(t.dtype, str(t.dtype).removeprefix("torch.")) for t in tensors}))
