"""What the nodes need from ComfyUI: model folders, file choice, device and dtype, cached networks,
progress. Node classes stay thin by calling these."""

import logging
import os
import weakref

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import folder_paths
import torch

from ..loaders.model_files import PACK_FOLDERS, missing_file_message
from ..preprocessors.run import map_images


def register_model_folders() -> None:
    """Add models/<key> for each pack folder, keeping paths extra_model_paths.yaml already added
    (ComfyUI reads that file before packs load, creating the key with no extension filter)."""
    for key in PACK_FOLDERS:
        default = os.path.join(folder_paths.models_dir, key)
        paths = list(folder_paths.folder_names_and_paths.get(key, ([], set()))[0])
        if default not in paths:
            paths.append(default)
        folder_paths.folder_names_and_paths[key] = (paths, folder_paths.supported_pt_extensions)


def model_input(expected, tooltip):
    """A combo over the model folder of `expected` (a loaders.model_files.ModelFile)."""
    names = folder_paths.get_filename_list(expected.folder)
    options = {"tooltip": f"{tooltip} Folder: models/{expected.folder}."}
    if expected.name in names:
        options["default"] = expected.name
    return (names, options)


def check_model_choice(expected, name):
    """VALIDATE_INPUTS for a model combo: True, or the message that says what to do.

    Only names listed in the folder are accepted, so a posted '../x' or absolute path never
    reaches the file system; a listed link is read only where it leads into a model folder.
    ComfyUI validates before a linked input has a value: None passes here and model_path checks
    the value it gets at run time.
    """
    if name is None:
        return True
    if name not in folder_paths.get_filename_list(expected.folder):
        return missing_file_message(expected, name, folder_paths.get_folder_paths(expected.folder))
    return _outside_model_folders(expected, name) or True


def check_model_choices(**choices):
    """VALIDATE_INPUTS for several model combos, `input=(expected, name)`: True, or each failing
    input's own message, labelled with the input. ComfyUI shows one VALIDATE_INPUTS answer under
    every input the method takes, so the answer must say which message is whose."""
    messages = [(name, check_model_choice(*choice)) for name, choice in choices.items()]
    failing = [f"{name}: {message}" for name, message in messages if message is not True]
    return "\n".join(failing) or True


def _outside_model_folders(expected, name):
    """The refusal for a listed file that is a link leading out of every folder ComfyUI reads
    models from (any key, with extra_model_paths.yaml entries), else None. Linking big files in
    from another model folder keeps working; a link to anywhere else is not followed."""
    target = os.path.realpath(folder_paths.get_full_path(expected.folder, name))
    roots = {os.path.realpath(path) for paths, *_ in folder_paths.folder_names_and_paths.values() for path in paths}
    if any(os.path.commonpath([target, root]) == root for root in roots):
        return None
    return (
        f"'{name}' in the '{expected.folder}' model folder is a link to {target}, outside every model folder, "
        f"and files are only read from model folders. Move the file into the '{expected.folder}' folder, or "
        f"add the folder it is in to extra_model_paths.yaml (under '{expected.folder}:'), then refresh the page (press "
        "R)."
    )


def model_path(expected, name) -> str:
    """The file chosen for a model input, checked again now that a linked input has its value."""
    if name is None:
        message = missing_file_message(expected, name, folder_paths.get_folder_paths(expected.folder))
    else:
        message = check_model_choice(expected, name)
    if message is not True:
        raise FileNotFoundError(message)
    return folder_paths.get_full_path_or_raise(expected.folder, name)


def compute_dtype(device):
    """fp16 where ComfyUI would run fp16 models on this device (not on CPU, not with --force-fp32)."""
    return torch.float16 if mm.should_use_fp16(device, prioritize_performance=False) else torch.float32


# What was built from each file version, for as long as anything ComfyUI holds refers to it: a
# loader's output in ComfyUI's execution cache, or a node object that keeps what it loaded (as
# ComfyUI's LoRA loader does). Weak, so /free and cache eviction release the networks as they
# release ComfyUI's own models, while one file is never held twice.
_loaded = weakref.WeakValueDictionary()


def cached_load(expected, name, build, built_as):
    """`build(path)` for file `name`, shared per file version and `built_as` (what is built from it,
    hashable) while it is held; when the file changes on disk it is read again."""
    path = model_path(expected, name)
    stat = os.stat(path)
    key = (built_as, os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    built = _loaded.get(key)
    if built is None:
        logging.info("Style Suite: reading %s", path)
        built = _loaded[key] = build(path)
    return built


def as_patcher(module):
    """`module` cast to the compute dtype and wrapped in a ModelPatcher, so ComfyUI moves it to the
    device, offloads it when memory is needed and unloads it on /free."""
    device = mm.get_torch_device()
    return comfy.model_patcher.ModelPatcher(
        module.to(compute_dtype(device)), load_device=device, offload_device=mm.unet_offload_device()
    )


def cached_patcher(expected, name, load):
    """The network in file `name` as a ModelPatcher (see as_patcher); `load(path)` builds the fp32 module."""
    built_as = (load.__qualname__, compute_dtype(mm.get_torch_device()))
    return cached_load(expected, name, lambda path: as_patcher(load(path)), built_as)


def load_network(expected, name, load):
    """The network in file `name` as a ModelPatcher (see cached_patcher), loaded on ComfyUI's device,
    ready to run (its module is `.model`)."""
    patcher = cached_patcher(expected, name, load)
    mm.load_models_gpu([patcher])
    return patcher


def progress(total):
    """A callback `report(finished)` taking how many of `total` items are finished so far (a
    running total, not an increment): sets ComfyUI's progress bar to it and honours Cancel."""
    bar = comfy.utils.ProgressBar(total)

    def report(finished):
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(finished)

    return report


def run_preprocessor(net, images, detect, resolution, binary):
    """Run `detect` over an IMAGE batch with `net`'s device and dtype; returns an IMAGE on
    ComfyUI's intermediate device."""
    parameter = next(net.parameters())
    return map_images(
        images,
        detect,
        resolution=resolution,
        binary=binary,
        device=parameter.device,
        dtype=parameter.dtype,
        output_device=mm.intermediate_device(),
        on_progress=progress(images.shape[0]),
    )
