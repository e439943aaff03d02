"""Why a file failed to load, said so a user can act on it: a web page or Git LFS pointer saved under
a model's name, a download cut short (told from each container's own structure), a pickle that asks
for code, another format under a weights suffix. Judged from the file's bytes, never by running it."""

import io
import json
import os
import pickle
import pickletools
import re
import zipfile

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
INST_PICKLED_CLASS = "ldm.modules.embedding_manager.Attentions"  # the class InST's embeddings.pt pickles
CHOOSE_STYLE_FILE = "choose it in InST Style Token (models/inst)"


def what_is_wrong(path, error) -> str:
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
    if asked == INST_PICKLED_CLASS:
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


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
