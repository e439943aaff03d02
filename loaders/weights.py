"""Read and write weight files without executing anything; check them against an expected layout."""

import io
import json
import os
import pickle
import pickletools
import re
import zipfile
from contextlib import contextmanager

import torch
from safetensors import safe_open

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
INST_NETWORK = "ldm.modules.embedding_manager.Attentions"  # the class InST's embeddings.pt pickles
CHOOSE_STYLE_FILE = "choose it in InST Style Token (models/inst)"


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
    except Exception as error:  # truncated zips, foreign formats: torch and safetensors raise many types
        raise ModelFileError(f"{name} {_what_is_wrong(path, error)}") from None


def _what_is_wrong(path, error) -> str:
    """Why a file failed to load, judged from its bytes before the error (the error alone cannot tell a
    cut file from a hostile one: a pickle cut inside a class name asks for that half name)."""
    with open(path, "rb") as file:
        head = file.read(256)
    not_weights = _not_weights(head)
    if not_weights:
        return not_weights
    container = _container(head)
    cut = _cut_short(path, container, error)
    if cut:
        return (
            f"could not be read as a weights file: it is cut short ({cut}). The download or copy did not "
            "finish: download it again."
        )
    asked = _asked_for(error)
    if asked == INST_NETWORK:
        return f"is an InST style file (it pickles InST's network), not weights for this input: {CHOOSE_STYLE_FILE}."
    if asked or (isinstance(error, pickle.UnpicklingError) and container in ("zip", "pickle")):
        what = f"it asks for {asked}" if asked else "it holds objects or pickle instructions"
        return (
            f"was refused: {what}, which a weights file never needs; nothing from it was run. Only use weight "
            "files from the sources listed in the README."
        )
    if container is None:
        return (
            f"could not be read as a weights file: it is neither safetensors nor a PyTorch file (it begins "
            f"with the bytes {head[:8].hex(' ')}). Choose the file the README lists for this input, or download it "
            "again."
        )
    named = "safetensors" if path.lower().endswith(SAFETENSORS_SUFFIXES) else "PyTorch"
    actual = "safetensors" if container == "safetensors" else "PyTorch"
    if actual != named:  # read by the name: a converted copy saved as .pth, or the reverse
        suffix = ".safetensors" if actual == "safetensors" else ".pth"
        return (
            f"could not be read as a weights file: it is a {actual} file under a {named} file's name. "
            f"Rename it to {os.path.splitext(os.path.basename(path))[0]}{suffix}."
        )
    return (
        f"could not be read as a weights file ({type(error).__name__}: {_first_line(error)}). "
        "It may be truncated or not a model file: download it again."
    )


def _not_weights(head):
    """What a file that failed to load is instead, from its first bytes `head` (a web page or a Git
    LFS pointer saved under a model's name), or None."""
    head = head.lstrip().lower()
    if head.startswith(b"version https://git-lfs"):
        return (
            "is a Git LFS pointer (a few lines of text), not the model file: download the file itself "
            "(the README's link), not a clone of the repository without git-lfs"
        )
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml", b'{"error')):
        return (
            "is a web page or an error message, not a model file: the download saved what the server "
            "answered instead of the file; download it again from the README's link"
        )
    return None


def _container(head):
    """What a file is by its first bytes `head`, whatever its name: "safetensors", "zip" (torch's format
    since 1.6), "pickle" (torch's legacy format: pickles, then raw tensor data) or None."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x80"):  # a pickle of protocol 2 or later
        return "pickle"
    if head[8:9] == b"{":  # 8-byte header length, then the JSON header
        return "safetensors"
    return None


def _cut_short(path, container, error):
    """How a file shows that its end is missing (a download or copy that stopped), or None."""
    size = os.path.getsize(path)
    if container == "safetensors":
        end = _safetensors_end(path, size)
        return f"{size:,} bytes where its header describes {end:,}" if end and end > size else None
    if container == "zip":  # a zip archive ends with its directory: torch finds no tensor without it
        return None if zipfile.is_zipfile(path) else "the end of its zip archive is missing"
    if container == "pickle" and (_pickles_cut(path, size) or "unexpected EOF" in str(error)):
        return "its data stops in the middle"
    return None


MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


def _safetensors_end(path, size):
    """The size a safetensors file's header says the file has (None where the header is unreadable);
    nothing more than the header is read."""
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")
        if 8 + length > size or length > MAX_HEADER:  # the header itself is cut, or is not one
            return 8 + length
        try:
            header = json.loads(file.read(length))
            ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
            return 8 + length + max(ends, default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):  # a header that lies: not ours to judge
            return None


LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)  # the first of a legacy torch file's pickles
LEGACY_PICKLES = 5  # the magic number, protocol, system info, the object, its storage keys; then raw data
LEGACY_HEAD = 16 << 20  # those pickles are small; they are walked only when the whole file is this small


def _pickles_cut(path, size):
    """Whether the pickles a legacy torch file starts with stop before their end (walked with
    pickletools, which reads the opcodes and builds nothing)."""
    if size > LEGACY_HEAD:
        return False
    with open(path, "rb") as file:
        data = file.read()
    stream = io.BytesIO(data)
    for _ in range(LEGACY_PICKLES):
        if stream.tell() == size:  # a torch file has all five pickles; a bare pickle may end here
            return data.startswith(LEGACY_MAGIC)
        try:
            for _ in pickletools.genops(stream):
                pass
        except ValueError:  # an unknown opcode mid-file is damage; running out of bytes is a cut
            return stream.tell() == size
    return False


def _asked_for(error):
    """The global a refused pickle asked for (ours or torch's message), or None."""
    return getattr(error, "qualified", None) or next(iter(re.findall(r"GLOBAL ([\w.]+)", str(error))), None)


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
    article = "an" if kind[0] in "AEIOU" else "a"
    raise ModelFileError(
        f"{os.path.basename(path)} is not {article} {kind}: {', '.join(problems)}.{hint} "
        "Choose the right file for this input."
    )


def dtype_names(tensors) -> str:
    """How tensors are stored, for messages: "fp16", "fp16 and fp32"."""
    names = {dtype: f"fp{dtype.itemsize * 8}" for dtype in (torch.float16, torch.float32, torch.float64)}
    return " and ".join(sorted({names.get(t.dtype, str(t.dtype).removeprefix("torch.")) for t in tensors}))


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
