"""The pack on this machine's accelerator, in one command: one Markdown table with the device, torch
and ComfyUI versions, and an exit status of 1 when a check fails.

1. Every shipped workflow, in-process, in the dtype ComfyUI picks here: it completes, its images have no
   NaN or inf; seconds and peak memory (torch's max allocated and reserved on a GPU, the process's peak
   resident memory on the CPU). Real scale: as shipped (512 px SD1.x, 1024 px SDXL), 20 steps.
2. fp16 against fp32 on the same inputs, per component, through the real nodes with ComfyUI's and the
   pack's dtype forced: StyleShot style tokens, one UNet step with Apply Style, with Apply Content and
   with StyleAligned Batch Align (each against the plain UNet's own fp16 error), contour and lineart maps
   (differing pixels), InST token. Tolerances are in TOLERANCES, with the reason for each.
3. Patched/unpatched per-step ratios: Apply Style against the plain step, Apply Content against a stock
   ControlNet of the same weights, Batch Align against the plain step.

With a GPU it runs at real scale (at most 8 minutes on an H100, fixture weights included); without one,
or with --scale test, the same checks run at the test scale (64 px, 2 steps), as tests/host/test_device_check.py
does so this command cannot rot between GPU runs. Fixture weights have the published shapes (the SDXL
fixture is every level 320 wide, tests/fixtures/sdxl_checkpoint.py).

    COMFYUI_PATH=/path/to/ComfyUI python bench/device_check.py [--scale real|test] [--models DIR]
"""

import argparse
import contextlib
import dataclasses
import gc
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from common import (  # noqa: E402
    in_process_comfyui,
    model_step,
    peak_memory,
    prepare_control,
    step_inputs,
    step_times,
    work_dir,
)
from PIL import Image  # noqa: E402

from fixtures import images, model_root  # noqa: E402
from fixtures.comfy_inprocess import execute_prompt  # noqa: E402
from fixtures.model_root import CHECKPOINT, CLIP_VISION_L  # noqa: E402
from fixtures.shipped_workflows import API_WORKFLOWS, at_test_scale, load, with_steps  # noqa: E402

REAL_STEPS = 20
# fp16 keeps 11 significant bits (a relative step of 4.9e-4). Through the 40-odd layers of a UNet or a
# ViT-H, errors of a few 1e-3 of the output's range are what fp16 gives; an overflow (AdaIN variances,
# attention scores) gives inf, NaN or an error of order 1. So a patched step may have at most twice the
# plain UNet's own fp16 error plus 2e-3, a network output at most 2e-2, and a map may differ where a
# value sits within fp16's step of the threshold (contour) or a level (lineart): at most 1% of pixels.
TOLERANCES = {"step": (2.0, 2e-3), "network": 2e-2, "pixels": 0.01}
GOALS = {"Apply Style": 1.05, "Apply Content": 1.02}  # per-step ratio targets, judged at real scale
IMAGE_DRIVEN_VRAM_GIB = 4.5  # the image-driven StyleShot graph at 512 px


class Table:
    def __init__(self):
        self.rows = []

    def add(self, check, measured, target="", ok=None):
        self.rows.append((check, measured, target, ok))
        print(f"  {check}: {measured}", flush=True)

    @property
    def failed(self):
        return [row for row in self.rows if row[3] is False]

    def print(self):
        print("\n| check | measured | target | result |\n|---|---|---|---|")
        for check, measured, target, ok in self.rows:
            print(f"| {check} | {measured} | {target} | {'' if ok is None else 'pass' if ok else '**FAIL**'} |")


def finite(value):
    return bool(torch.isfinite(value.float()).all())


def relative_error(value, reference):
    """max |value - reference| / max |reference|, in fp32."""
    reference = reference.float()
    return float((value.float() - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


@contextlib.contextmanager
def forced_dtype(pack, mm, dtype):
    """ComfyUI's UNet, text-encoder and ControlNet dtypes and the pack's compute dtype all `dtype`."""
    host = pack.nodes.host
    saved = mm.unet_dtype, mm.text_encoder_dtype, host.compute_dtype
    mm.unet_dtype = lambda *args, **kwargs: dtype
    mm.text_encoder_dtype = lambda *args, **kwargs: dtype
    host.compute_dtype = lambda device: dtype
    try:
        yield
    finally:
        mm.unet_dtype, mm.text_encoder_dtype, host.compute_dtype = saved


def free(mm):
    mm.unload_all_models()
    gc.collect()
    mm.soft_empty_cache()


def run_workflows(nodes, mm, scale, table):
    """Part 1: each shipped workflow in-process, timed, its peak memory and its images checked."""
    reset, read = peak_memory()
    cuda = mm.get_torch_device().type == "cuda"
    for path in API_WORKFLOWS:
        prompt = at_test_scale(load(path)) if scale == "test" else with_steps(load(path), REAL_STEPS)
        free(mm)
        reset()
        start = time.perf_counter()
        outputs = execute_prompt(prompt, nodes.NODE_CLASS_MAPPINGS)
        seconds = time.perf_counter() - start
        peak = read()
        saved = [  # what the Save Image nodes were given
            outputs[link[0]][link[1]][0]
            for node in prompt.values()
            if node["class_type"] == "SaveImage"
            for link in [node["inputs"]["images"]]
        ]
        ok = bool(saved) and all(finite(image) for image in saved)
        if cuda:
            memory = f"peak {peak:.2f} GiB allocated, {torch.cuda.max_memory_reserved() / 2**30:.2f} reserved"
        else:  # the process's, with what the allocator kept from earlier workflows
            memory = f"process peak RSS {peak:.2f} GiB"
        del outputs, saved
        target, within = "completes, no NaN/inf", ok
        if path.stem.startswith("styleshot_image_driven") and cuda and scale == "real":
            target += f", at most {IMAGE_DRIVEN_VRAM_GIB} GiB"
            within = ok and peak <= IMAGE_DRIVEN_VRAM_GIB
        table.add(f"workflow {path.stem}", f"{seconds:.1f} s, {memory}", target, within)


def component_outputs(comfy_nodes, pack, mm, size, dtype):
    """What each component gives in `dtype`, on the same inputs: {name: tensor on the CPU}."""
    nodes = comfy_nodes.NODE_CLASS_MAPPINGS
    device = mm.get_torch_device()
    photo = images.comfy_image(images.photo(size, size, 3))
    outputs = {}
    with forced_dtype(pack, mm, dtype):  # one network family at a time, so the CPU run fits beside the tests
        (clip_vision,) = nodes["CLIPVisionLoader"]().load_clip(CLIP_VISION_L)
        (token,) = nodes["StyleSuiteInSTStyleToken"]().token("embeddings.pt", "official", clip_vision, photo[:1])
        outputs["InST token"] = token.vectors
        del clip_vision
        (content_map,) = nodes["StyleSuiteStyleShotContour"]().detect(photo, "ControlNetHED.pth", 200, 3, 1, 0)
        outputs["contour map"] = content_map
        outputs["lineart map"] = nodes["StyleSuiteLineart"]().detect(photo, "sk_model.pth", False, 0)[0]
        styleshot = nodes["StyleSuiteStyleShotLoader"]().load("style_aware_encoder.bin", "styleshot_contour_ip.bin")[0]
        (style,) = nodes["StyleSuiteStyleShotEncodeStyle"]().encode(styleshot, photo, 0, True, False)
        outputs["StyleShot style tokens"] = style.cond
        encoder_dtype = next(styleshot.encoder.model.parameters()).dtype
        styleshot = dataclasses.replace(styleshot, encoder=None)  # the applying nodes need only the adapter
        free(mm)
        model, clip, _ = nodes["CheckpointLoaderSimple"]().load_checkpoint(CHECKPOINT)[:3]
        (text,) = nodes["CLIPTextEncode"]().encode(clip, "a house by a lake")
        (styled,) = nodes["StyleSuiteStyleShotApplyStyle"]().apply(
            model, styleshot, style, 1.0, 0.0, 1.0, "all 16 (published)"
        )
        positive, _ = nodes["StyleSuiteStyleShotApplyContent"]().apply(
            text, text, styleshot, style, content_map, 1.0, 0.0, 1.0
        )
        (aligned,) = nodes["StyleSuiteStyleAlignedBatchAlign"]().apply(
            model, True, True, True, False, 1.0, 0.0, True, True, "all (published)"
        )
        two, four = step_inputs(2, size, device), step_inputs(4, size, device)
        control = positive[0][1]["control"]
        prepare_control(model, control)
        steps = {
            "UNet step": (model, two, None),
            "Apply Style step": (styled, two, None),
            "Apply Content step": (model, two, control),
            "UNet step, 4 rows": (model, four, None),
            "Batch Align step, 4 rows": (aligned, four, None),
        }
        for name, (patcher, inputs, step_control) in steps.items():
            mm.load_models_gpu([patcher] + (step_control.get_models() if step_control is not None else []))
            outputs[name] = model_step(patcher, inputs, step_control)
        control.cleanup()
    unet = model.model.manual_cast_dtype or model.model.get_dtype()  # ComfyUI casts weights up where needed
    computes = f"UNet {unet}, StyleShot {encoder_dtype}"
    result = {name: value.detach().float().cpu() for name, value in outputs.items()}
    del model, clip, styleshot, styled, aligned, control, positive
    free(mm)
    return result, computes


def compare_dtypes(comfy_nodes, pack, mm, size, table):
    """Part 2: fp16 against fp32 per component."""
    full, _ = component_outputs(comfy_nodes, pack, mm, size, torch.float32)
    half, computes = component_outputs(comfy_nodes, pack, mm, size, torch.float16)
    table.add("fp16 run computes in", computes, "float16 on a GPU (the CPU computes ComfyUI's models in float32)")
    factor, margin = TOLERANCES["step"]
    plain = {
        "Apply Style step": relative_error(half["UNet step"], full["UNet step"]),
        "Apply Content step": relative_error(half["UNet step"], full["UNet step"]),
        "Batch Align step, 4 rows": relative_error(half["UNet step, 4 rows"], full["UNet step, 4 rows"]),
    }
    for name in full:
        ok_finite = finite(half[name])
        if name.endswith("map"):
            levels = 0 if name.startswith("contour") else 2 / 255  # contour maps are binary
            differing = float(((half[name] - full[name]).abs() > levels + 1e-6).float().mean())
            table.add(
                f"fp16 {name}",
                f"{differing:.2%} of pixels differ",
                f"at most {TOLERANCES['pixels']:.0%}",
                ok_finite and differing <= TOLERANCES["pixels"],
            )
            continue
        error = relative_error(half[name], full[name])
        if name in plain:
            limit = factor * plain[name] + margin
            target = f"at most {limit:.2e} ({factor:g}x the plain UNet's {plain[name]:.2e} + {margin:g})"
        elif name.startswith("UNet step"):
            limit, target = None, "reference for the patched steps"
        else:
            limit = TOLERANCES["network"]
            target = f"at most {limit:g}"
        table.add(
            f"fp16 {name}",
            f"max rel error {error:.2e}" + ("" if ok_finite else ", NaN/inf"),
            target,
            ok_finite and (limit is None or error <= limit),
        )


def step_ratios(comfy_nodes, pack, mm, size, steps, scale, table):
    """Part 3: the patched/unpatched per-step ratios in ComfyUI's own dtype."""
    import comfy.controlnet

    nodes = comfy_nodes.NODE_CLASS_MAPPINGS
    photo = images.comfy_image(images.photo(size, size, 3))
    model = nodes["CheckpointLoaderSimple"]().load_checkpoint(CHECKPOINT)[0]
    styleshot = nodes["StyleSuiteStyleShotLoader"]().load("style_aware_encoder.bin", "styleshot_contour_ip.bin")[0]
    (style,) = nodes["StyleSuiteStyleShotEncodeStyle"]().encode(styleshot, photo, 0, True, False)
    (styled,) = nodes["StyleSuiteStyleShotApplyStyle"]().apply(
        model, styleshot, style, 1.0, 0.0, 1.0, "all 16 (published)"
    )
    text = [[torch.zeros(1, 77, 768), {}]]
    content_map = (torch.rand(1, size, size, 1) > 0.9).float().expand(-1, -1, -1, 3)
    ours = nodes["StyleSuiteStyleShotApplyContent"]().apply(text, text, styleshot, style, content_map, 1.0, 0.0, 1.0)
    stock_net = comfy.controlnet.ControlNet.copy(styleshot.adapter_file.content)  # same module, stock code path
    stock = nodes["ControlNetApplyAdvanced"]().apply_controlnet(text, text, stock_net, content_map, 1.0, 0.0, 1.0)
    (aligned,) = nodes["StyleSuiteStyleAlignedBatchAlign"]().apply(
        model, True, True, True, False, 1.0, 0.0, True, True, "all (published)"
    )
    judged = scale == "real"  # at the test scale the steps are too short for a ratio to mean much

    def ratio_row(check, variants, goal=None, batch=1):
        """One row: the first variant's step time over the second's (step_times), against `goal`."""
        measured, baseline = step_times(variants, size, steps, mm, batch=batch)
        ratio = measured / baseline
        target, ok = (f"at most {goal}", ratio <= goal if judged else None) if goal else ("reported", None)
        table.add(check, f"{ratio:.3f} ({baseline:.3f} s)", target, ok)

    ratio_row("step ratio Apply Style / plain", [(styled, None), (model, None)], GOALS["Apply Style"])
    controls = [ours[0][0][1]["control"], stock[0][0][1]["control"]]
    ratio_row(
        "step ratio Apply Content / stock ControlNet",
        [(model, controls[0]), (model, controls[1])],
        GOALS["Apply Content"],
    )
    ratio_row("step ratio Batch Align / plain, 4 rows", [(aligned, None), (model, None)], batch=2)
    del model, styleshot, styled, aligned, controls, ours, stock, stock_net
    free(mm)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["real", "test"], help="default: real on a GPU, test on the CPU")
    parser.add_argument("--models", type=Path, help="a model folder with the fixture files already written")
    args = parser.parse_args()
    scale = args.scale or ("real" if torch.cuda.is_available() else "test")
    size = 512 if scale == "real" else 64

    work = work_dir()
    models = args.models or work / "models"
    if not (models / "styleshot").is_dir():
        model_root.write_pack_models(models)
    for write, name in (
        (model_root.write_sd15, CHECKPOINT),
        (model_root.write_sdxl, model_root.SDXL_CHECKPOINT),
        (model_root.write_clip_vision, CLIP_VISION_L),
    ):
        if not any(models.rglob(name)):
            write(models)
    inputs = work / "input"
    inputs.mkdir()
    side = (size, size) if scale == "real" else (72, 104)  # the test scale uses the host tests' image
    Image.fromarray(images.photo(*side, 11)).save(inputs / model_root.INPUT_IMAGE)

    comfy_nodes, pack, mm = in_process_comfyui(models, core_extras=True)
    import comfyui_version
    import folder_paths

    folder_paths.set_input_directory(str(inputs))
    folder_paths.set_output_directory(str(work / "output"))
    device = mm.get_torch_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    shape = "as shipped (512 px SD1.x, 1024 px SDXL), 20 steps" if scale == "real" else "64 px, 2 steps"
    print(f"device: {name}; torch {torch.__version__}; ComfyUI {comfyui_version.__version__}; {scale} scale: {shape}")
    table = Table()
    started = time.perf_counter()
    run_workflows(comfy_nodes, mm, scale, table)
    compare_dtypes(comfy_nodes, pack, mm, size, table)
    step_ratios(comfy_nodes, pack, mm, size, 5 if scale == "real" else 1, scale, table)
    table.print()
    print(f"\n{len(table.rows)} checks, {len(table.failed)} failed, {time.perf_counter() - started:.0f} s")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
