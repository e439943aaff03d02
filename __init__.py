"""Style Suite: reference-based style transfer for ComfyUI (StyleShot, StyleAligned, InST, HED, lineart).

ComfyUI imports this folder under whatever name it has, so everything inside uses relative imports.
Imported anywhere else (unit tests, benchmarks, scripts) the pack is a plain library with no nodes.
"""

import sys

if "comfy" in sys.modules:  # ComfyUI imports its own modules before it loads custom nodes
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from .nodes.host import register_model_folders

    register_model_folders()
else:
    NODE_CLASS_MAPPINGS = {}
    NODE_DISPLAY_NAME_MAPPINGS = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
