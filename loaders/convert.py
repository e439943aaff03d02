"""Convert StyleShot's published files to slim safetensors: `ip.bin` without its 3.5 GB UNet copy,
`style_aware_encoder.bin` as a memory-mappable file, optionally in fp16.

Tensors are read memory-mapped and written one at a time, so the 5 GB `ip.bin` never has to fit
in RAM. The loaders check the layout before anything is written.
"""

import argparse
import os
import sys

import torch

from .styleshot import CONTENT, read_adapter_weights, read_encoder_weights
from .weights import ModelFileError, read_state_dict, write_safetensors

ENCODER_PROBE = "image_encoder.visual_projection.weight"  # only the style encoder file has it


def convert_encoder(path, out_path, dtype=None) -> None:
    write_safetensors(out_path, read_encoder_weights(path), dtype, _metadata(path))


def convert_adapter(path, out_path, dtype=None) -> None:
    style, content = read_adapter_weights(path)
    tensors = {**style, **{CONTENT + k: v for k, v in content.items()}}
    write_safetensors(out_path, tensors, dtype, _metadata(path))


def _metadata(path):
    return {"format": "pt", "converted_from": os.path.basename(path), "by": "style-suite"}


def _out_path(path, out_dir):
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(out_dir or os.path.dirname(os.path.abspath(path)), f"{stem}.safetensors")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Write slim .safetensors copies of StyleShot's style_aware_encoder.bin and ip.bin files. "
        "The StyleShot Loader accepts both the published files and these."
    )
    parser.add_argument("files", nargs="+", help="style_aware_encoder.bin and/or ip.bin files (contour or lineart)")
    parser.add_argument("--fp16", action="store_true", help="store weights in fp16 (half the size; fine for GPU use)")
    parser.add_argument("--out-dir", help="where to write (default: beside each input)")
    args = parser.parse_args(argv)
    dtype = torch.float16 if args.fp16 else None
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
    for path in args.files:
        out_path = _out_path(path, args.out_dir)
        try:
            probe = read_state_dict(path, keep=lambda key: key == ENCODER_PROBE)  # one small tensor
            (convert_encoder if probe else convert_adapter)(path, out_path, dtype)
        except (OSError, ModelFileError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{path} -> {out_path} ({os.path.getsize(out_path) / 2**20:.0f} MiB)")
    return 0
