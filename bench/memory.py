"""Peak resident memory of every shipped workflow at the test scale (2 steps, 64 px), each run in a
fresh CPU ComfyUI server started by the pack's launcher, against the same graph with the pack's
nodes bypassed (as ComfyUI's Bypass does: each output takes the node's input of the same type), and
the size of the model files each graph names. Fixture weights of the published shapes. Prints the
machine and a Markdown table; figures are MiB above the server's size before its first prompt.

    COMFYUI_PATH=/path/to/ComfyUI python bench/memory.py
"""

import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from common import comfyui_checkout, work_dir  # noqa: E402

from fixtures import model_root  # noqa: E402
from fixtures.comfy_server import MODEL_FOLDERS, ComfyServer, write_extra_model_paths  # noqa: E402
from fixtures.memory import status_mib  # noqa: E402
from fixtures.shipped_workflows import API_WORKFLOWS, at_test_scale, load  # noqa: E402

PACK_PREFIX = "StyleSuite"


def without_pack(prompt, object_info):
    """`prompt` with every pack node bypassed: a link to its output goes to its input of the same
    type. A prompt encoder without a CONDITIONING input (Prompt Batch, InST Text Encode) becomes
    CLIP Text Encode of its text; a number output takes the node's widget of that name, or 0
    (the prompt count for Prompt Batch)."""
    prompt = {key: {**node, "inputs": dict(node["inputs"])} for key, node in prompt.items()}
    source = {}  # (pack node id, output index) -> the link that stands in for it
    for key, node in list(prompt.items()):
        if not node["class_type"].startswith(PACK_PREFIX):
            continue
        info = object_info[node["class_type"]]
        declared = {**info["input"]["required"], **info["input"].get("optional", {})}
        for index, kind in enumerate(info["output"]):
            same = [v for name, v in node["inputs"].items() if isinstance(v, list) and declared[name][0] == kind]
            if same:
                source[key, index] = same[0]
            elif kind == "CONDITIONING":
                text = node["inputs"].get("text", node["inputs"].get("prompts"))
                encoder = f"{key}_text"
                prompt[encoder] = {
                    "class_type": "CLIPTextEncode",
                    "inputs": {"clip": node["inputs"]["clip"], "text": text},
                }
                source[key, index] = [encoder, 0]
            elif info["output_name"][index] == "count":  # Prompt Batch: one image per prompt line
                source[key, index] = len([line for line in node["inputs"]["prompts"].splitlines() if line.strip()])
            elif kind in ("INT", "FLOAT"):  # a number the node works out (InST's steps): its widget, or 0
                source[key, index] = node["inputs"].get(info["output_name"][index], 0)
            # any other output is a pack type (STYLESHOT, INST_TOKEN...) that only pack nodes take

    def resolve(link):
        while isinstance(link, list) and tuple(link) in source:
            link = source[tuple(link)]
        return link

    kept = {key: node for key, node in prompt.items() if not node["class_type"].startswith(PACK_PREFIX)}
    for node in kept.values():
        node["inputs"] = {k: resolve(v) if isinstance(v, list) else v for k, v in node["inputs"].items()}
    return kept


def file_mib(prompt, files):
    """Size of the model files the graph names, in MiB."""
    names = {v for node in prompt.values() for v in node["inputs"].values() if isinstance(v, str)}
    return sum(files[name] for name in names if name in files) / 2**20


def peak_mib(comfyui, models, inputs, work, prompt):
    """(peak, after) resident MiB above the start of a fresh server that runs `prompt` once."""
    base = Path(work) / f"server{len(list(Path(work).glob('server*')))}"
    (base / "input").mkdir(parents=True)
    for image in inputs.iterdir():
        (base / "input" / image.name).write_bytes(image.read_bytes())
    extra = write_extra_model_paths(base / "extra_model_paths.yaml", models, MODEL_FOLDERS)
    server = ComfyServer(comfyui, base, extra)
    try:
        start = status_mib("VmRSS", server.process.pid)
        server.run(prompt)
        return status_mib("VmHWM", server.process.pid) - start, server.get("/object_info")
    finally:
        server.stop()


def main():
    comfyui = comfyui_checkout()
    work = work_dir()
    models = model_root.write_pack_models(work / "models")
    for write in (model_root.write_sd15, model_root.write_sdxl, model_root.write_clip_vision):
        write(models)
    inputs = model_root.write_input_image(work / "input")
    files = {path.name: path.stat().st_size for path in models.rglob("*") if path.is_file()}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "")
    print(f"machine: {cpu or platform.machine()}, Linux {platform.release()}, CPU server (--cpu), fp32", flush=True)

    object_info = None
    rows = []
    for path in API_WORKFLOWS:
        prompt = at_test_scale(load(path))
        with_pack, object_info = peak_mib(comfyui, models, inputs, work, prompt)
        plain, _ = peak_mib(comfyui, models, inputs, work, without_pack(prompt, object_info))
        rows.append((path.stem, file_mib(prompt, files), with_pack, plain))
        print(f"  {path.stem}: {with_pack:.0f} MiB, bypassed {plain:.0f} MiB", flush=True)

    print("\n| workflow | model files named (MiB) | peak RSS (MiB) | pack nodes bypassed (MiB) | added by the pack |")
    print("|---|---:|---:|---:|---:|")
    for name, size, with_pack, plain in rows:
        print(f"| {name} | {size:.0f} | {with_pack:.0f} | {plain:.0f} | {with_pack - plain:+.0f} |")


if __name__ == "__main__":
    main()
