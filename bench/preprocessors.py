"""Preprocessor speed through the real nodes in an in-process ComfyUI (COMFYUI_PATH), on fixture
weights of the published shapes: first run (file read + build + run) vs cached run, and a batch
of 4 vs four single images, at each size. Prints the machine; ratios come from this one run.

    COMFYUI_PATH=/path/to/ComfyUI python bench/preprocessors.py [--sizes 512 1024]
"""

import argparse
import gc
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from common import in_process_comfyui, timed, work_dir  # noqa: E402

from fixtures import annotators, images  # noqa: E402

NODES = [  # (label, node id, model file, fixed inputs after image and file)
    ("contour", "StyleSuiteStyleShotContour", "ControlNetHED.pth", (200, 3, 1, 0)),
    ("lineart", "StyleSuiteLineart", "sk_model.pth", (False, 0)),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args()

    work = work_dir()
    annotators.write_annotators(work / "models" / "annotators")
    _, pack, mm = in_process_comfyui(work / "models")

    print(
        f"{'node':8} {'size':>5} {'first run s':>12} {'cached s':>9} {'first/cached':>13} "
        f"{'batch4 s/img':>13} {'single s/img':>13} {'batch4/single':>14}"
    )
    for label, key, model, rest in NODES:
        for size in args.sizes:
            node = pack.NODE_CLASS_MAPPINGS[key]()  # a new node object: nothing holds its network yet
            gc.collect()
            one = images.comfy_image(images.photo(size, size, 0))
            four = images.comfy_image(*[images.photo(size, size, s) for s in range(4)])
            mm.soft_empty_cache()
            first = timed(lambda: node.detect(one, model, *rest))
            cached = timed(lambda: node.detect(one, model, *rest))
            batch = timed(lambda: node.detect(four, model, *rest)) / 4
            singles = sum(timed(lambda: node.detect(four[i : i + 1], model, *rest)) for i in range(4)) / 4
            print(
                f"{label:8} {size:>5} {first:>12.3f} {cached:>9.3f} {first / cached:>13.2f} "
                f"{batch:>13.3f} {singles:>13.3f} {batch / singles:>14.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
