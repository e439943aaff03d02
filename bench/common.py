"""What the benchmarks share: the machine line, a timer, random-weight SD1.5 and SDXL MODELs built
by ComfyUI, and interleaved per-step timing and peak memory of model calls (with optional
ControlNets)."""

import atexit
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import conftest  # noqa: F401 (tests/conftest.py, on sys.path from each script: imports the pack as style_suite)
import torch

SD15_UNET = {  # ComfyUI's unet_config for SD1.5
    "context_dim": 768,
    "model_channels": 320,
    "use_linear_in_transformer": False,
    "adm_in_channels": None,
    "use_temporal_attention": False,
    "in_channels": 4,
    "out_channels": 4,
    "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_middle": 1,
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    "num_heads": 8,
    "num_head_channels": -1,
    "use_spatial_transformer": True,
    "image_size": 32,
    "legacy": False,
}


def machine(mm):
    device = mm.get_torch_device()
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = f", {mm.get_torch_device_name(device)}" if device.type != "cpu" else ""
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({threads} threads), device {device}{gpu}"


def comfyui_checkout() -> Path:
    """The ComfyUI checkout named by COMFYUI_PATH; exits with a message without one."""
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout (the benchmark runs the nodes inside it)")
    return Path(comfyui)


def in_process_comfyui(models, core_extras=False, **settings):
    """(ComfyUI's nodes module, the pack, comfy.model_management): ComfyUI imported in this process
    with the pack loaded and `models` as its model folder root, on the GPU where torch sees one
    (else the CPU), with any other command-line `settings` (and ComfyUI's comfy_extras nodes with
    `core_extras`); prints the machine line."""
    from fixtures.comfy_inprocess import comfyui_with_pack  # the scripts put tests/ on sys.path

    settings = {"cpu": not torch.cuda.is_available(), **settings}
    comfy_nodes, pack = comfyui_with_pack(comfyui_checkout(), models, models / "custom_nodes", core_extras, **settings)
    import comfy.model_management as mm

    print(f"machine: {machine(mm)}", flush=True)
    return comfy_nodes, pack, mm


def work_dir():
    """A temporary folder for fixture weights (gigabytes), removed when the benchmark exits."""
    path = Path(tempfile.mkdtemp(prefix="style_suite_bench_"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


SDXL_UNET = {  # ComfyUI's unet_config for SDXL base
    **SD15_UNET,
    "context_dim": 2048,
    "use_linear_in_transformer": True,
    "adm_in_channels": 2816,
    "num_res_blocks": [2, 2, 2],
    "channel_mult": [1, 2, 4],
    "transformer_depth": [0, 0, 2, 2, 10, 10],
    "transformer_depth_middle": 10,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
    "num_heads": -1,
    "num_head_channels": 64,
    "num_classes": "sequential",
}


def random_sd15(mm):
    """(MODEL, dtype): ComfyUI's SD1.5 UNet with small random weights, in ComfyUI's compute dtype."""
    import comfy.supported_models

    return _random_unet(comfy.supported_models.SD15(dict(SD15_UNET)), mm)


def random_sdxl(mm):
    """(MODEL, dtype): ComfyUI's SDXL UNet (2.6 B parameters) with small random weights."""
    import comfy.supported_models

    return _random_unet(comfy.supported_models.SDXL(dict(SDXL_UNET)), mm)


def _random_unet(config, mm):
    import comfy.model_patcher

    dtype = torch.float16 if mm.should_use_fp16(mm.get_torch_device()) else torch.float32
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():  # ComfyUI leaves weights uninitialised
            scale = 0.02 if p.ndim > 1 else 0.01
            p.copy_(torch.randn(p.shape, generator=generator) * scale + (1.0 if name.endswith("norm.weight") else 0.0))
    return comfy.model_patcher.ModelPatcher(model, mm.get_torch_device(), mm.unet_offload_device()), dtype


def peak_memory():
    """(reset, read): reset the peak memory of this process (GPU allocations on a GPU, resident
    memory on the CPU) and read it in GiB."""
    if torch.cuda.is_available():
        return torch.cuda.reset_peak_memory_stats, lambda: torch.cuda.max_memory_allocated() / 2**30

    def reset():
        Path("/proc/self/clear_refs").write_text("5")  # restarts VmHWM at the current RSS

    def read():
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 2**20

    return reset, read


def step_inputs(rows, size, device, context_dim=768, seed=0):
    """(x, sigma, context, extra): random inputs of one model call on `rows` rows at `size` px
    (`extra` holds SDXL's `y` when the context is 2048 wide)."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device)

    extra = {"y": randn(rows, 2816)} if context_dim == 2048 else {}
    return (
        randn(rows, 4, size // 8, size // 8),
        torch.full((rows,), 5.0, device=device),
        randn(rows, 77, context_dim),
        extra,
    )


def model_step(patcher, inputs, control=None, control_context=None):
    """The model's output for one call as ComfyUI's sampler makes it on `inputs` (step_inputs), one
    cond and one uncond chunk: the control's get_control, then the UNet with its residuals (with the
    MODEL's wrappers). The models must be loaded (load_models_gpu) and the control's pre_run done."""
    x, sigma, context, extra = inputs
    options = dict(
        patcher.model_options["transformer_options"], cond_or_uncond=[1, 0], sigmas=sigma, wrappers=patcher.wrappers
    )
    with torch.no_grad():
        residuals = None
        if control is not None:
            cond = {"c_crossattn": context}
            if control_context is not None:
                cond["crossattn_controlnet"] = control_context.to(x.device)
            residuals = control.get_control(x, sigma, cond, 2, options)
        return patcher.model.apply_model(
            x, sigma, c_crossattn=context, control=residuals, transformer_options=options, **extra
        )


def prepare_control(patcher, control):
    """The control's pre_run against `patcher`, as the sampler does before its first step."""
    if control is not None:
        sampling = patcher.get_model_object("model_sampling")
        control.pre_run(patcher.model, lambda percent: sampling.percent_to_sigma(percent))


def step_times(variants, size, steps, mm, batch=1, context_dim=768, memory=False):
    """Seconds per model step (model_step) on an [uncond, cond] batch of `batch` images each at
    `size` px for each variant (MODEL, control or None, and optionally the `crossattn_controlnet`
    context its cond carries). Calls are interleaved, each round starting at the next variant, and
    the fastest of `steps` kept, so drift and noise hit every variant alike. With `memory`, also
    returns each variant's peak memory of one step (GiB)."""
    device = mm.get_torch_device()
    inputs = step_inputs(2 * batch, size, device, context_dim)

    def step(patcher, control=None, control_context=None):
        mm.load_models_gpu([patcher] + (control.get_models() if control is not None else []))
        start = time.perf_counter()
        model_step(patcher, inputs, control, control_context)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for patcher, *control in variants:
        prepare_control(patcher, control[0] if control else None)
        step(patcher, *control)  # warm-up (and the control's hint is prepared)
    best = [float("inf")] * len(variants)
    for round_ in range(steps):
        for offset in range(len(variants)):
            i = (round_ + offset) % len(variants)
            best[i] = min(best[i], step(*variants[i]))
    for _, *control in variants:
        if control and control[0] is not None:
            control[0].cleanup()
    if not memory:
        return best
    reset, read = peak_memory()
    peaks = []
    for variant in variants:
        mm.load_models_gpu([variant[0]])
        reset()
        step(*variant)
        peaks.append(read())
    return best, peaks
