"""StyleShot costs, measured in one run on fixture weights of the published shapes, through an
in-process ComfyUI (COMFYUI_PATH):

1. per-step UNet time with Apply Style vs the same model unpatched (SD1.5, cond + uncond batch);
2. Encode Style latency vs one CLIP ViT-H image encode (ComfyUI's CLIP_VISION, same tower size);
3. load time and peak memory of a full-size ip.bin (UNet copy + content-fusion encoder) vs its
   slim safetensors, each in a fresh process, with the official torch.load as a baseline.

    COMFYUI_PATH=/path/to/ComfyUI python bench/styleshot.py [--size 512] [--steps 3] [--skip-load]
"""

import argparse
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from common import comfyui_checkout, in_process_comfyui, random_sd15, step_times, timed, work_dir  # noqa: E402

from fixtures import images, styleshot  # noqa: E402

UNET_COPY_TENSORS = 10  # ip.bin's 3.44 GB UNet copy, as ten 344 MB tensors
LOAD_SCRIPT = """
import sys, time, torch
sys.path.insert(0, {tests!r})
import conftest
from style_suite.loaders.styleshot import load_adapter
start = time.perf_counter()
if sys.argv[1] == "official":
    state = torch.load(sys.argv[2], map_location="cpu")  # what StyleShot's own loader does
    adapter = {{k: v for k, v in state.items() if not k.startswith("unet.")}}
    del state
else:
    adapter = load_adapter(sys.argv[2])
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(time.perf_counter() - start, peak_kib / 2**20)  # VmHWM restarts at exec, unlike ru_maxrss
"""


def encode_times(pack, shot, repeats, mm):
    import comfy.clip_vision

    clip_vision = comfy.clip_vision.load_clipvision_from_sd(
        styleshot.random_tensors(styleshot.clip_layout(prefix=""), 3)
    )
    image = images.comfy_image(images.photo(768, 1024, 1))
    node = pack.NODE_CLASS_MAPPINGS["StyleSuiteStyleShotEncodeStyle"]()
    node.encode(shot, image, 0, True, False)
    clip_vision.encode_image(image)  # warm-up both
    ours = sum(timed(lambda: node.encode(shot, image, 0, True, False)) for _ in range(repeats)) / repeats
    clip = sum(timed(lambda: clip_vision.encode_image(image)) for _ in range(repeats)) / repeats
    return ours, clip


def load_costs(work):
    """(seconds, peak RSS GiB) per way of loading the adapter, each in a fresh process."""
    full = work / "ip.bin"
    tensors = styleshot.adapter_state_dict(content_fusion=styleshot.content_fusion_layout())
    for i in range(UNET_COPY_TENSORS):
        tensors[f"unet.copy.{i}.weight"] = torch.randn(86_000_000 // 1000, 1000)
    torch.save(tensors, full)
    del tensors
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_styleshot.py"), str(full)], check=True, capture_output=True
    )
    slim = full.with_suffix(".safetensors")
    script = LOAD_SCRIPT.format(tests=str(ROOT / "tests"))
    costs = {}
    for label, mode, path in (
        ("official torch.load, ip.bin", "official", full),
        ("ours, ip.bin", "ours", full),
        ("ours, slim .safetensors", "ours", slim),
    ):
        out = subprocess.run(
            [sys.executable, "-c", script, mode, str(path)], check=True, capture_output=True, text=True
        )
        seconds, peak = map(float, out.stdout.split()[-2:])
        costs[label] = (seconds, peak, path.stat().st_size / 2**30)
    return costs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--skip-load", action="store_true", help="skip the 5 GB ip.bin load comparison")
    args = parser.parse_args()
    comfyui_checkout()

    work = work_dir()
    if not args.skip_load:  # first, while this process is small
        for label, (seconds, peak, size) in load_costs(work).items():
            print(f"load {label:30} file {size:5.2f} GiB  {seconds:6.2f} s  peak RSS {peak:5.2f} GiB", flush=True)
        for name in ("ip.bin", "ip.safetensors"):
            (work / name).unlink()
    (work / "styleshot").mkdir()
    styleshot.write_encoder(work / "styleshot" / "style_aware_encoder.bin")
    styleshot.write_adapter(work / "styleshot" / "styleshot_contour_ip.bin")
    _, pack, mm = in_process_comfyui(work)
    nodes = pack.NODE_CLASS_MAPPINGS
    (shot,) = nodes["StyleSuiteStyleShotLoader"]().load("style_aware_encoder.bin", "styleshot_contour_ip.bin")
    (style,) = nodes["StyleSuiteStyleShotEncodeStyle"]().encode(
        shot, images.comfy_image(images.photo(512, 512, 2)), 0, True, False
    )

    unet, dtype = random_sd15(mm)
    (patched,) = nodes["StyleSuiteStyleShotApplyStyle"]().apply(unet, shot, style, 1.0, 0.0, 1.0, "all 16 (published)")
    plain, styled = step_times([(unet, None), (patched, None)], args.size, args.steps, mm)
    print(
        f"UNet step at {args.size} px, batch 2, {dtype}: unpatched {plain:.3f} s, Apply Style {styled:.3f} s, "
        f"patched/unpatched {styled / plain:.3f}"
    )

    ours, clip = encode_times(pack, shot, 3, mm)
    print(f"Encode Style {ours:.3f} s per image, CLIP ViT-H encode_image {clip:.3f} s, ratio {ours / clip:.2f}")


if __name__ == "__main__":
    main()
