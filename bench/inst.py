"""InST costs, measured in one run on random weights of the published shapes, through an in-process
ComfyUI (COMFYUI_PATH):

1. InST Style Token: the first call (file read, CLIP ViT-L/14 encode, network) and a cached call,
   against one plain CLIP vision encode of the same image (what any image-prompt node pays);
2. InST Text Encode against CLIP Text Encode on the same prompt, short and long (3 chunks).

    COMFYUI_PATH=/path/to/ComfyUI python bench/inst.py [--repeats 5]
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from common import in_process_comfyui, timed, work_dir  # noqa: E402

from fixtures import images, inst  # noqa: E402
from fixtures.clip_models import write_clip_l, write_clip_vision_l  # noqa: E402

PROMPTS = {
    "short": "a lighthouse on a cliff at dusk, in the style of *",
    "long (3 chunks)": ", ".join(f"detail {i}" for i in range(60)) + ", in the style of *",
}


def mean_time(fn, repeats):
    fn()  # warm-up
    return sum(timed(fn) for _ in range(repeats)) / repeats


def token_times(pack, clip_vision, image, repeats):
    node = pack.NODE_CLASS_MAPPINGS["StyleSuiteInSTStyleToken"]()
    first = timed(lambda: node.token("embeddings.pt", "corrected", clip_vision, image))
    cached = mean_time(lambda: node.token("embeddings.pt", "corrected", clip_vision, image), repeats)
    plain = mean_time(lambda: clip_vision.encode_image(image), repeats)
    return first, cached, plain


def encode_times(pack, clip, token, text, repeats):
    node = pack.NODE_CLASS_MAPPINGS["StyleSuiteInSTTextEncode"]()
    ours = mean_time(lambda: node.encode(clip, token, text, "*"), repeats)
    plain = mean_time(lambda: clip.encode_from_tokens_scheduled(clip.tokenize(text)), repeats)
    return ours, plain


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    work = work_dir()
    (work / "inst").mkdir()
    inst.write_inst(work / "inst" / "embeddings.pt")
    vision_path = write_clip_vision_l(work / "clip_vision" / "clip-vit-large-patch14.safetensors")
    clip_path = write_clip_l(work / "clip" / "clip_l.safetensors")
    _, pack, mm = in_process_comfyui(work)
    import comfy.clip_vision
    import comfy.sd

    clip_vision = comfy.clip_vision.load(str(vision_path))
    clip = comfy.sd.load_clip(ckpt_paths=[str(clip_path)], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
    image = images.comfy_image(images.photo(768, 1024, 1))

    torch.set_grad_enabled(False)  # as ComfyUI runs nodes: no autograd bookkeeping on either side
    first, cached, plain = token_times(pack, clip_vision, image, args.repeats)
    print(
        f"InST Style Token: first call {first:.3f} s (file + CLIP ViT-L/14 + network), cached {cached * 1000:.2f} ms; "
        f"plain CLIP vision encode {plain:.3f} s; first/plain {first / plain:.2f}, cached/plain {cached / plain:.4f}"
    )

    (token,) = pack.NODE_CLASS_MAPPINGS["StyleSuiteInSTStyleToken"]().token(
        "embeddings.pt", "corrected", clip_vision, image
    )
    for label, text in PROMPTS.items():
        ours, plain = encode_times(pack, clip, token, text, args.repeats)
        print(
            f"InST Text Encode, {label} prompt: {ours * 1000:.1f} ms, CLIP Text Encode {plain * 1000:.1f} ms, "
            f"ratio {ours / plain:.2f}"
        )


if __name__ == "__main__":
    main()
