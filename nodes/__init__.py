"""ComfyUI node classes, one module per feature; this module merges their mappings."""

from .version import require_comfyui

require_comfyui()  # before the node modules import what an older ComfyUI lacks

from . import inst, preprocessors, style_aligned, styleshot  # noqa: E402

FEATURES = (preprocessors, styleshot, style_aligned, inst)

NODE_CLASS_MAPPINGS = {key: cls for feature in FEATURES for key, cls in feature.NODE_CLASS_MAPPINGS.items()}
NODE_DISPLAY_NAME_MAPPINGS = {
    key: name for feature in FEATURES for key, name in feature.NODE_DISPLAY_NAME_MAPPINGS.items()
}
