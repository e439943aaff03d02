"""Is each model file the pack reads in place, and is it the file it should be: what the `models`
command (models_command.py) reports and what a download (download.py) is checked with.

A file is checked as its loader reads it (key layout and shapes, memory-mapped; no network is
built, nothing in it runs), against the published size where that is known, and on request
against the published sha256. Required files: those marked `required` in model_files.py; an
optional one fails only when it is there but unusable.
"""

import hashlib
import os
from dataclasses import dataclass

from . import annotators, clip_vision
from .checkpoints import check_checkpoint
from .inst import load_style_file
from .model_files import (
    ALL,
    CLIP_VISION_L,
    HED,
    INST_STYLE,
    LINEART_COARSE,
    LINEART_FINE,
    MODEL_SUFFIXES,
    SD15_CHECKPOINT,
    SDXL_CHECKPOINT,
    STYLE_ENCODER,
    STYLESHOT_CONTOUR,
    STYLESHOT_LINEART,
    ModelFile,
)
from .styleshot import read_adapter_weights, read_encoder_weights
from .weights import ModelFileError, dtype_names

SIZE_TOLERANCE = 0.01  # for files known only by size_mb (rounded to 0.1 MB): an error page is far off
CHUNK = 1 << 20
SAME_LAYOUT = "{} share this layout: the file cannot say which one it is"


# ---------------------------------------------------------------- what a file is


def _hed(model_file, path):
    return f"HED network, {dtype_names(annotators.read_hed_weights(path).values())}"


def _lineart(model_file, path):
    weights = annotators.read_lineart_weights(path)
    shared = SAME_LAYOUT.format(f"{LINEART_FINE.name} and {LINEART_COARSE.name}")
    return f"lineart generator, {dtype_names(weights.values())} ({shared})"


def _encoder(model_file, path):
    return f"StyleShot style-aware encoder, {dtype_names(read_encoder_weights(path).values())}"


def _adapter(model_file, path):
    style, content = read_adapter_weights(path)
    if not content:
        raise ModelFileError(
            f"{os.path.basename(path)} is the stage-1 release without the content-fusion encoder; {model_file.name} "
            f"is the release that has it: download {model_file.download_name} from {model_file.url}"
        )
    shared = SAME_LAYOUT.format("the contour and lineart releases")
    return (
        f"StyleShot adapter with content-fusion encoder, {dtype_names([*style.values(), *content.values()])} ({shared})"
    )


def _style(model_file, path):
    return f"style file: {load_style_file(path).kind}"


def _clip(model_file, path):
    return clip_vision.check_vit_l(path)


_CHECKS = {
    HED.name: _hed,
    LINEART_FINE.name: _lineart,
    LINEART_COARSE.name: _lineart,
    STYLE_ENCODER.name: _encoder,
    STYLESHOT_CONTOUR.name: _adapter,
    STYLESHOT_LINEART.name: _adapter,
    INST_STYLE.name: _style,
    CLIP_VISION_L.name: _clip,
    SD15_CHECKPOINT.name: lambda model_file, path: check_checkpoint(path, "SD1.x"),
    SDXL_CHECKPOINT.name: lambda model_file, path: check_checkpoint(path, "SDXL"),
}


def check_file(model_file, path) -> str:
    """A short description of what `path` holds when it can fill `model_file`'s slot ("HED network,
    fp16"); else ModelFileError naming the file and what is wrong."""
    return _CHECKS[model_file.name](model_file, str(path))


# ---------------------------------------------------------------- the published file


def size_problem(model_file, size) -> str:
    """'' when `size` bytes can be the published file; else the published size, for a message."""
    if model_file.size_bytes:
        return "" if size == model_file.size_bytes else f"{model_file.size_bytes:,} bytes"
    if abs(size / 1e6 - model_file.size_mb) <= SIZE_TOLERANCE * model_file.size_mb:
        return ""
    return f"about {model_file.size_mb} MB"


def hash_file(path, hasher=None):
    """`hasher` (a new sha256 by default) fed with the bytes of the file."""
    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            hasher.update(chunk)
    return hasher


def check_published(model_file, path, with_hash=False) -> None:
    """Refuse a file in the published format whose size (and with `with_hash`, sha256) is not the
    published file's. A converted copy (another format) has its own size and hash: not compared."""
    published_format = os.path.splitext(model_file.download_name)[1].lower()
    if not model_file.direct_download or os.path.splitext(path)[1].lower() != published_format:
        return
    name, size = os.path.basename(path), os.path.getsize(path)
    expected = size_problem(model_file, size)
    if expected:
        raise ModelFileError(
            f"{name} is {size:,} bytes; the published {model_file.download_name} is {expected}: "
            "an incomplete download or another file. Download it again."
        )
    if with_hash and model_file.sha256:
        digest = hash_file(path).hexdigest()
        if digest != model_file.sha256:
            raise ModelFileError(
                f"{name} has sha256 {digest}; the published {model_file.download_name} has "
                f"{model_file.sha256}: the file is damaged or another version. Download it again."
            )


# ---------------------------------------------------------------- each slot in the folders


@dataclass
class Found:
    path: str
    description: str = ""  # what it is, when it can be used
    problem: str = ""  # why it cannot


@dataclass
class Status:
    model_file: ModelFile
    folder: str  # where it goes: the first folder of its key
    present: list  # Found for each file under a name the nodes look for (any model file, for any_name slots)
    strays: list  # when none is: usable files under other names (workflows refer to files by name)

    @property
    def ok(self) -> bool:
        if any(found.problem for found in self.present):
            return False
        return bool(self.present) or not self.model_file.required

    @property
    def in_place(self) -> bool:
        """A usable file is there (whether or not the file is required)."""
        return bool(self.present) and self.ok


def examine(model_file, path, with_hash=False) -> Found:
    try:
        description = check_file(model_file, path)
        check_published(model_file, path, with_hash)
        return Found(path, description)
    except ModelFileError as error:
        return Found(path, problem=str(error))
    except OSError as error:
        return Found(path, problem=f"{path} cannot be read ({error})")


def _model_files(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(
        name
        for name in os.listdir(folder)
        if name.lower().endswith(MODEL_SUFFIXES) and os.path.isfile(os.path.join(folder, name))
    )


def _first_of_each(names, folders):
    """The path of each name in the first folder that has it (as ComfyUI resolves a file name)."""
    paths = {}
    for folder in folders:
        for name in _model_files(folder):
            if names is None or name in names:
                paths.setdefault(name, os.path.join(folder, name))
    return [paths[name] for name in sorted(paths)]


def slot_status(model_file, folders, with_hash=False) -> Status:
    """`model_file`'s files in `folders` (its key's folders, in search order), each checked."""
    names = None if model_file.any_name else model_file.accepted_names
    present = [examine(model_file, path, with_hash) for path in _first_of_each(names, folders)]
    strays = []  # a checkpoint of another name is the user's own model, chosen in the workflow, not renamed
    if not present and not model_file.any_name and not model_file.substitutable:
        claimed = {name for other in ALL if other.folder == model_file.folder for name in other.accepted_names}
        others = [os.path.join(f, name) for f in folders for name in _model_files(f) if name not in claimed]
        strays = [found for found in (examine(model_file, path, with_hash) for path in others) if not found.problem]
    return Status(model_file, folders[0], present, strays)


def check_all(folders, with_hash=False) -> list:
    """A Status for each model file, `folders` as model_folders returns them."""
    return [slot_status(model_file, folders[model_file.folder], with_hash) for model_file in ALL]
