"""StyleAligned Batch Align cost, measured in one run through an in-process ComfyUI (COMFYUI_PATH):
per-step UNet time and peak memory, aligned (published defaults) vs the same model unpatched, on
SD1.5 for a batch of 2 images at 256 px (4 rows with CFG: uncond, uncond, cond, cond) and a batch
of 4 at --size (8 rows); and on SDXL at 1024 px where a GPU is present (or with --sdxl).
--attention pytorch runs ComfyUI with --use-pytorch-cross-attention (SDPA, what diffusers and the
official StyleAligned code use); by default ComfyUI picks (sub-quadratic attention on the CPU).

    COMFYUI_PATH=/path/to/ComfyUI python bench/style_aligned.py [--size 512] [--batch 4] [--steps 3] [--sdxl]
        [--attention comfyui|pytorch]
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from common import in_process_comfyui, random_sd15, random_sdxl, step_times, work_dir  # noqa: E402


def compare(name, unet, dtype, align, size, batch, steps, mm, group_norm, context_dim=768):
    """Print plain vs aligned per-step time and peak memory, and their ratios."""
    (aligned,) = align.apply(unet, True, True, True, False, 1.0, 0.0, group_norm, group_norm, "all (published)")
    (plain, shared), (plain_peak, shared_peak) = step_times(
        [(unet, None), (aligned, None)], size, steps, mm, batch=batch, context_dim=context_dim, memory=True
    )
    print(
        f"{name} at {size} px, batch {batch} (+ uncond), {dtype}, group norm sharing {'on' if group_norm else 'off'}: "
        f"unpatched {plain:.3f} s/step, peak {plain_peak:.2f} GiB; aligned {shared:.3f} s/step, peak {shared_peak:.2f} "
        "GiB; "
        f"time ratio {shared / plain:.3f}, memory ratio {shared_peak / plain_peak:.3f}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--sdxl", action="store_true", help="also run SDXL at 1024 px without a GPU")
    parser.add_argument("--attention", choices=["comfyui", "pytorch"], default="comfyui")
    args = parser.parse_args()

    work = work_dir()
    _, pack, mm = in_process_comfyui(work, use_pytorch_cross_attention=args.attention == "pytorch")
    import comfy.ldm.modules.attention

    print(f"attention: {comfy.ldm.modules.attention.optimized_attention.__name__}", flush=True)
    align = pack.NODE_CLASS_MAPPINGS["StyleSuiteStyleAlignedBatchAlign"]()
    unet, dtype = random_sd15(mm)
    compare("SD1.5", unet, dtype, align, 256, 2, max(args.steps, 6), mm, group_norm=True)
    compare("SD1.5", unet, dtype, align, args.size, args.batch, args.steps, mm, group_norm=True)
    del unet
    mm.unload_all_models()
    if mm.get_torch_device().type == "cuda" or args.sdxl:
        unet, dtype = random_sdxl(mm)
        compare("SDXL", unet, dtype, align, 1024, args.batch, args.steps, mm, group_norm=False, context_dim=2048)
    else:
        print("SDXL at 1024 px: skipped (no GPU; --sdxl runs it anyway)")


if __name__ == "__main__":
    main()
