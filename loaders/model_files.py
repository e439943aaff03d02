"""The model files the pack reads: name, model folder, purpose and where to get each one.

README's model table and every "file not found" message are written from this one list.
"""

import os
from dataclasses import dataclass

PACK_FOLDERS = ("annotators", "styleshot", "inst")  # the model folders the pack registers; ComfyUI has the others
MODEL_SUFFIXES = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")  # ComfyUI's list


@dataclass(frozen=True)
class ModelFile:
    name: str
    folder: str  # ComfyUI model-folder key (also the extra_model_paths.yaml key)
    purpose: str
    url: str
    size_mb: float
    sha256: str = ""  # of the published file (its Git LFS pointer), where known
    size_bytes: int = 0  # exact published size, where known
    published_name: str = ""  # the name at `url` when the folder needs another one
    direct_download: bool = True  # False: `url` is a page to pick a file from by hand
    required: bool = True  # False: only an optional feature needs it (`models` reports it, missing is fine)
    convertible: bool = False  # also taken as <stem>.safetensors, the slim copy loaders/convert.py writes
    any_name: bool = False  # one file per style, named freely: every file in the folder is one
    substitutable: bool = False  # the workflows name this file, but any model of its kind works in its place

    @property
    def download_name(self) -> str:
        return self.published_name or self.name

    @property
    def accepted_names(self) -> tuple:
        """The names the nodes and workflows look for in the folder."""
        if not self.convertible:
            return (self.name,)
        return self.name, f"{os.path.splitext(self.name)[0]}.safetensors"


HED = ModelFile(
    name="ControlNetHED.pth",
    folder="annotators",
    purpose="HED edge network for StyleShot Contour and HED Soft Edges",
    url="https://huggingface.co/lllyasviel/Annotators/resolve/main/ControlNetHED.pth",
    size_mb=29.4,
    size_bytes=29_444_406,
    sha256="5ca93762ffd68a29fee1af9d495bf6aab80ae86f08905fb35472a083a4c7a8fa",
)
LINEART_FINE = ModelFile(
    name="sk_model.pth",
    folder="annotators",
    purpose="fine lineart generator for Lineart (StyleShot's default)",
    url="https://huggingface.co/lllyasviel/Annotators/resolve/main/sk_model.pth",
    size_mb=17.2,
    size_bytes=17_173_511,
    sha256="c686ced2a666b4850b4bb6ccf0748031c3eda9f822de73a34b8979970d90f0c6",
)
LINEART_COARSE = ModelFile(
    name="sk_model2.pth",
    folder="annotators",
    purpose="coarse lineart generator for Lineart (optional)",
    url="https://huggingface.co/lllyasviel/Annotators/resolve/main/sk_model2.pth",
    size_mb=17.2,
    sha256="30a534781061f34e83bb9406b4335da4ff2616c95d22a585c1245aa8363e74e0",
    required=False,
)

STYLE_ENCODER = ModelFile(
    name="style_aware_encoder.bin",
    folder="styleshot",
    purpose="StyleShot style-aware encoder (one file for both releases), or its converted .safetensors",
    url="https://huggingface.co/Gaojunyao/StyleShot/resolve/main/pretrained_weight/style_aware_encoder.bin",
    size_mb=1807.2,
    size_bytes=1_807_217_753,
    sha256="5ef458358b6acdd2e1451e8ada6b1f60e5a02f031a2e0eca724d69c48b999196",
    convertible=True,
)
STYLESHOT_CONTOUR = ModelFile(
    name="styleshot_contour_ip.bin",
    folder="styleshot",
    purpose="StyleShot style adapter and contour content-fusion encoder, or its converted .safetensors",
    url="https://huggingface.co/Gaojunyao/StyleShot/resolve/main/pretrained_weight/ip.bin",
    size_mb=4979.1,
    published_name="ip.bin",
    convertible=True,
)
STYLESHOT_LINEART = ModelFile(
    name="styleshot_lineart_ip.bin",
    folder="styleshot",
    purpose="StyleShot style adapter and lineart content-fusion encoder, or its converted .safetensors",
    url="https://huggingface.co/Gaojunyao/StyleShot_lineart/resolve/main/pretrained_weight/ip.bin",
    size_mb=4979.1,
    size_bytes=4_979_093_987,
    sha256="20c9f5018f444a90e9a8b7aed56d24c7a134a92822d3dbddaed544fbbf4bfe1e",
    published_name="ip.bin",
    convertible=True,
    required=False,
)

INST_STYLE = ModelFile(
    name="embeddings.pt",
    folder="inst",
    purpose="an InST style (embeddings.pt from InST's training, or a published <style>_embeddings.pt) "
    "or a textual-inversion embedding for SD1.x",
    url="https://drive.google.com/drive/folders/1vte8eIp1QG9sQ4iKVeuQnB-RqmqMxVoD",
    size_mb=15.0,
    direct_download=False,
    required=False,
    any_name=True,
)
CLIP_VISION_L = ModelFile(
    name="clip-vit-large-patch14.safetensors",
    folder="clip_vision",
    purpose="CLIP ViT-L/14 (OpenAI), the image encoder InST computes its style token from",
    url="https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/model.safetensors",
    size_mb=1710.5,
    size_bytes=1_710_540_580,
    sha256="a2bf730a0c7debf160f7a6b50b3aaf3703e7e88ac73de7a314903141db026dcb",
    published_name="model.safetensors",
    required=False,  # InST only
)

SD15_CHECKPOINT = ModelFile(
    name="v1-5-pruned-emaonly-fp16.safetensors",
    folder="checkpoints",
    purpose="Stable Diffusion 1.5, the checkpoint the StyleShot, InST and SD1.5 StyleAligned workflows load "
    "(any SD1.5-based checkpoint works in its place)",
    url="https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors",
    size_mb=2132.7,
    size_bytes=2_132_696_762,
    sha256="e9476a13728cd75d8279f6ec8bad753a66a1957ca375a1464dc63b37db6e3916",
    substitutable=True,
)
SDXL_CHECKPOINT = ModelFile(
    name="sd_xl_base_1.0.safetensors",
    folder="checkpoints",
    purpose="Stable Diffusion XL base 1.0, the checkpoint the SDXL StyleAligned workflow loads "
    "(any SDXL-based checkpoint works in its place)",
    url="https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
    size_mb=6938.1,
    size_bytes=6_938_078_334,
    sha256="31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
    required=False,  # the SDXL workflow only
    substitutable=True,
)

ALL = (
    HED,
    LINEART_FINE,
    LINEART_COARSE,
    STYLE_ENCODER,
    STYLESHOT_CONTOUR,
    STYLESHOT_LINEART,
    INST_STYLE,
    CLIP_VISION_L,
    SD15_CHECKPOINT,
    SDXL_CHECKPOINT,
)
BY_NAME = {model_file.name: model_file for model_file in ALL}


def missing_file_message(expected: ModelFile, chosen, searched) -> str:
    """What to do when the file chosen for a slot is not in its model folder."""
    what = f"'{chosen}' was not found" if chosen else "no file was chosen"
    folders = "\n".join(f"  - {path}" for path in searched) or "  (no folder is registered)"
    return (
        f"{what} in the '{expected.folder}' model folder; this input needs {expected.name} "
        f"({expected.purpose}).\n"
        f"Folders searched:\n{folders}\n"
        f"Download {expected.download_name} ({expected.size_mb} MB) from {expected.url} into one of them"
        f"{'' if expected.download_name == expected.name else f' and rename it {expected.name}'}, "
        f"or add a '{expected.folder}:' entry to extra_model_paths.yaml, then refresh the page (press R)."
    )
