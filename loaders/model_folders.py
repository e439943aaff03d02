"""Where a ComfyUI install looks for the pack's model files, in ComfyUI's order, found without
importing ComfyUI: `<ComfyUI>/models/<key>` and the entries of `extra_model_paths.yaml` files, read
by the rules of ComfyUI's utils/extra_config.py and folder_paths.add_model_folder_path."""

import os

from .model_files import ALL, PACK_FOLDERS

KEYS = tuple(dict.fromkeys(model_file.folder for model_file in ALL))


class ConfigError(ValueError):
    """The ComfyUI folder or an extra_model_paths.yaml cannot be used; the message says why."""


def extra_model_paths(yaml_path) -> list:
    """(key, folder, is_default) for each path in an extra_model_paths.yaml, in file order.

    As ComfyUI reads it: each top-level section may set `base_path` (~ and $VARS expanded, relative
    to the yaml's folder); every other key holds one path or several on separate lines, joined to
    base_path, else taken relative to the yaml's folder; `is_default: true` puts the section's
    folders first.
    """
    try:
        import yaml  # ComfyUI depends on PyYAML; the pack itself does not
    except ImportError:
        raise ConfigError(
            f"Reading {yaml_path} needs PyYAML, which ComfyUI installs: run this with the Python "
            "that runs ComfyUI, or pip install pyyaml"
        ) from None
    try:
        with open(yaml_path, encoding="utf-8") as stream:
            config = yaml.safe_load(stream) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{yaml_path} cannot be read: {error}") from None
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    if not isinstance(config, dict) or not all(isinstance(c, dict) for c in config.values() if c is not None):
        raise ConfigError(
            f"{yaml_path} is not laid out as ComfyUI expects: named sections, each a mapping "
            "of model-folder keys to paths (see ComfyUI's extra_model_paths.yaml.example)"
        )
    found = []
    for section in config.values():
        section = dict(section or {})
        base_path = section.pop("base_path", None)
        if base_path is not None:
            base_path = os.path.expandvars(os.path.expanduser(base_path))
            base_path = os.path.abspath(os.path.join(yaml_dir, base_path))
        is_default = bool(section.pop("is_default", False))
        for key, value in section.items():
            if not isinstance(value, str):
                raise ConfigError(
                    f"{yaml_path}: '{key}' is {value!r}; ComfyUI expects a path, or several on "
                    "separate lines (a | block)"
                )
            for path in filter(None, value.split("\n")):
                path = os.path.join(base_path, path) if base_path else os.path.join(yaml_dir, path)
                found.append((key, os.path.normpath(path), is_default))
    return found


def model_folders(comfyui=None, extra_configs=(), models_dirs=()) -> dict:
    """{key: [folders]} for the pack's keys, in search order: each of `models_dirs` (folders laid out
    like ComfyUI/models) first, then ComfyUI's own order: its models/<key> for the folders ComfyUI
    registers, the yaml entries (<comfyui>/extra_model_paths.yaml, then `extra_configs`), and
    models/<key> for the pack's folders, which the pack registers after ComfyUI has read the yaml."""
    folders = {key: [] for key in KEYS}

    def add(key, path, first=False):  # as folder_paths.add_model_folder_path: a known path only moves to the front
        paths = folders.setdefault(key, [])
        if first and path in paths:
            paths.remove(path)
        if path not in paths:
            paths.insert(0 if first else len(paths), path)

    configs = list(extra_configs)
    if comfyui:
        comfyui = os.path.abspath(comfyui)
        if not os.path.isdir(os.path.join(comfyui, "models")):
            raise ConfigError(
                f"{comfyui} is not a ComfyUI folder (it has no models/ folder): give the folder "
                "that holds ComfyUI's main.py"
            )
        for key in KEYS:
            if key not in PACK_FOLDERS:
                add(key, os.path.join(comfyui, "models", key))
        own_config = os.path.join(comfyui, "extra_model_paths.yaml")
        configs = ([own_config] if os.path.isfile(own_config) else []) + configs
    for config in configs:
        for key, path, is_default in extra_model_paths(config):
            add(key, path, is_default)
    if comfyui:
        for key in PACK_FOLDERS:
            add(key, os.path.join(comfyui, "models", key))
    for models_dir in reversed(models_dirs):
        for key in KEYS:
            add(key, os.path.join(os.path.abspath(models_dir), key), first=True)
    return {key: folders[key] for key in KEYS}
