"""StyleAligned Batch Align cost, measured in one run through an in-process ComfyUI (COMFYUI_PATH):
per-step UNet time and peak memory for a batch of 4 images (8 rows with CFG), aligned (published
defaults) vs the same model unpatched, on SD1.5 at 512 px; and on SDXL at 1024 px where a GPU is
present (or with --sdxl).

    COMFYUI_PATH=/path/to/ComfyUI python bench/style_aligned.py [--size 512] [--batch 4] [--steps 3] [--sdxl]
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
    args = parser.parse_args()

    work = work_dir()
    _, pack, mm = in_process_comfyui(work)
    align = pack.NODE_CLASS_MAPPINGS["StyleSuiteStyleAlignedBatchAlign"]()
    unet, dtype = random_sd15(mm)
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
