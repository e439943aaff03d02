"""The oldest ComfyUI the pack runs on, checked before any node module imports what it needs of it."""

import re

# comfy.patcher_extension's wrappers (0.3.7) and transformer_options["sample_sigmas"] (0.3.11), which
# the reference row and StyleAligned's GroupNorm sharing rely on; comfyui_version.py came with 0.3.11.
MINIMUM = (0, 3, 11)


def require_comfyui() -> None:
    """Refuse to load, saying what to do, on a ComfyUI older than MINIMUM."""
    try:
        from comfyui_version import __version__ as version
    except ImportError:
        version = "older than 0.3.11"
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    if numbers and numbers >= MINIMUM:
        return
    raise RuntimeError(
        f"Style Suite needs ComfyUI {'.'.join(map(str, MINIMUM))} or newer, and this ComfyUI is {version}: update "
        "ComfyUI (in its folder: git pull, then pip install -r requirements.txt; or the Manager's 'Update ComfyUI') "
        "and restart it."
    )
