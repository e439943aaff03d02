"""StyleShot Apply Content's per-step cost, measured in one run through an in-process ComfyUI
(COMFYUI_PATH) on fixture weights of the published shapes: an SD1.5 step (cond + uncond batch) with

- no ControlNet,
- a stock ComfyUI ControlNet of the same size (the content-fusion encoder as a plain ComfyUI
  ControlNet sharing its weights, applied with ComfyUI's Apply ControlNet: it reads the 77 text
  tokens),
- the same stock ControlNet given the 6 style tokens through ComfyUI's own `crossattn_controlnet`
  conditioning key (same work as the content encoder, no pack code in the step),
- StyleShot's content-fusion encoder through Apply Content (it reads the 6 style tokens).

Target: the content encoder costs at most 2% more per step than the stock ControlNet. The last two
rows isolate what the pack adds per step (choosing the tokens of each chunk).

    COMFYUI_PATH=/path/to/ComfyUI python bench/content_fusion.py [--size 512] [--steps 3]
"""

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from common import in_process_comfyui, random_sd15, step_times, work_dir  # noqa: E402

from fixtures import images, styleshot  # noqa: E402

ENCODER, ADAPTER = "style_aware_encoder.bin", "styleshot_contour_ip.bin"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    work = work_dir()
    (work / "styleshot").mkdir()
    styleshot.write_encoder(work / "styleshot" / ENCODER)
    styleshot.write_adapter(work / "styleshot" / ADAPTER, content_fusion=styleshot.content_fusion_layout())
    comfy_nodes, pack, mm = in_process_comfyui(work)
    import comfy.controlnet

    nodes = pack.NODE_CLASS_MAPPINGS
    (shot,) = nodes["StyleSuiteStyleShotLoader"]().load(ENCODER, ADAPTER)
    (style,) = nodes["StyleSuiteStyleShotEncodeStyle"]().encode(
        shot, images.comfy_image(images.photo(512, 512, 2)), 0, True, False
    )
    content_map = (torch.rand(1, args.size, args.size, 1) > 0.9).float().expand(-1, -1, -1, 3)
    text = [[torch.randn(1, 77, 768), {}]]

    (ours, _) = nodes["StyleSuiteStyleShotApplyContent"]().apply(text, text, shot, style, content_map, 1.0, 0.0, 1.0)
    encoder = shot.adapter_file.content
    stock_net = comfy.controlnet.ControlNet.copy(encoder)  # same module, so only the code path differs
    (stock, _) = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(
        text, text, stock_net, content_map, 1.0, 0.0, 1.0
    )

    unet, dtype = random_sd15(mm)
    stock_control = stock[0][1]["control"]
    style_context = torch.cat([style.uncond, style.cond])  # rows: uncond, cond
    rows = [
        ("no ControlNet", (unet,)),
        ("stock ControlNet, text context", (unet, stock_control)),
        ("stock ControlNet, style tokens", (unet, stock_control, style_context)),
        ("StyleShot Apply Content", (unet, ours[0][1]["control"])),
    ]
    seconds = step_times([variant for _, variant in rows], args.size, args.steps, mm)
    print(f"SD1.5 step at {args.size} px, batch 2 (cond + uncond), {dtype}, fastest of {args.steps}:")
    for (label, _), value in zip(rows, seconds):
        print(f"  {label:32} {value:7.3f} s")
    none, text, tokens, ours_s = seconds
    print(
        f"Apply Content / stock ControlNet: {ours_s / text:.3f} with text context (target <= 1.02), "
        f"{ours_s / tokens:.3f} with the same style tokens; Apply Content / no ControlNet {ours_s / none:.3f}"
    )


if __name__ == "__main__":
    main()
