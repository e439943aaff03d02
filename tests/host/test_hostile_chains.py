"""Chains, through a real ComfyUI server: StyleShot style + content + StyleAligned + InST feeding one
KSampler on a batch of 2, each of them acting; a stock ControlNet chained before or after the
content-fusion one; another pack's attn2 patch before or after Apply Style; and runs after the
pack's nodes were deleted or bypassed giving exactly the latents and pixels of a graph that never
had them.

The graphs are built from the shipped API workflows (nodes copied by title) at test scale: the test
content image's size (104x72), 2 steps. Bypass is what the frontend sends for a node in mode 4: the
node is left out and each link from it goes to its first input of the same type, the input at the
output's own index first (graphToPrompt)."""

import copy
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from fixtures.comfy_server import MODEL_FOLDERS, ComfyServer, write_extra_model_paths
from fixtures.shipped_workflows import API_DIR, at_test_scale, load, node_id, saved_pngs, titled
from fixtures.styleshot import content_fusion_layout, random_tensors

TEST_NODES = Path(__file__).resolve().parents[1] / "fixtures" / "chain_test_nodes"
STOCK_CONTROLNET = "stock_sd15_controlnet.safetensors"
WIDTH, HEIGHT, BATCH = 104, 72, 2  # the test content image's size: the content map fits the latent
TEXT = "a house by a lake in the style of *"  # InST's placeholder; plain CLIP reads '*' as a word
PACK_NODES = ("StyleShot Apply Style", "StyleAligned Batch Align", "StyleShot Apply Content")  # pass-through


@pytest.fixture(scope="module")
def server(comfyui_path, model_root, sd15_checkpoint, clip_vision_l, input_dir, tmp_path_factory):
    """This module's own server: the shared one's model folders plus controlnet/ holding a stock SD1.5
    ControlNet (diffusers layout, random weights, fp16), and the test nodes beside the pack."""
    controlnet = model_root / "controlnet" / STOCK_CONTROLNET
    controlnet.parent.mkdir(exist_ok=True)
    save_file({k: v.half() for k, v in random_tensors(content_fusion_layout(), seed=7).items()}, controlnet)
    base = tmp_path_factory.mktemp("chains_base")
    shutil.copytree(input_dir, base / "input")
    shutil.copytree(TEST_NODES, base / "custom_nodes" / TEST_NODES.name)
    extra = write_extra_model_paths(base / "extra_model_paths.yaml", model_root, [*MODEL_FOLDERS, "controlnet"])
    comfy_server = ComfyServer(comfyui_path, base, extra)
    yield comfy_server
    comfy_server.stop()
    controlnet.unlink()


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


# --- graphs ----------------------------------------------------------------------------------------


def out(prompt, title, slot=0):
    return [node_id(prompt, title), slot]


def add(prompt, node, title=None, **inputs):
    """A copy of `node` (from a shipped workflow, or written here) under a new id; returns its output 0."""
    new = str(max(map(int, prompt)) + 1)
    prompt[new] = copy.deepcopy(node)
    prompt[new]["inputs"].update(inputs)
    prompt[new].setdefault("_meta", {})["title"] = title or prompt[new]["_meta"]["title"]
    return [new, 0]


def core(class_type, **inputs):
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": class_type}}


def plain():
    """Graph A: plain SD1.5 text-to-image (the text-driven workflow without its StyleShot nodes), a
    batch of 2, the sampled latent saved as well, and the probe behind the sampler."""
    prompt = at_test_scale(load(API_DIR / "styleshot_text_driven.json"))
    for title in ("StyleShot Loader", "Style image", "StyleShot Encode Style", "StyleShot Apply Style"):
        del prompt[node_id(prompt, title)]
    titled(prompt, "Prompt")["inputs"]["text"] = TEXT
    titled(prompt, "Size")["inputs"].update(width=WIDTH, height=HEIGHT, batch_size=BATCH)
    sampler = titled(prompt, "Sampler")
    sampler["inputs"]["model"] = out(prompt, "Load Checkpoint")
    add(prompt, core("SaveLatent", samples=out(prompt, "Sampler"), filename_prefix="latents/style_suite_chains"))
    add(prompt, core("ChainTestModelProbe", model=sampler["inputs"]["model"], samples=out(prompt, "Sampler")))
    return prompt


def full_chain():
    """Graph B: A plus StyleShot Apply Style and Apply Content, StyleAligned Batch Align and InST's
    token in the prompt (InST Text Encode of the same text), all feeding A's one KSampler."""
    prompt = plain()
    contour = load(API_DIR / "styleshot_image_driven_contour.json")
    inst = load(API_DIR / "inst_style_transfer.json")
    aligned = load(API_DIR / "stylealigned_batch_sd15.json")
    checkpoint = node_id(prompt, "Load Checkpoint")
    style_image = add(prompt, titled(contour, "Style image"))
    loader = add(prompt, titled(contour, "StyleShot Loader"))
    style = add(prompt, titled(contour, "StyleShot Encode Style"), styleshot=loader, image=style_image)
    model = add(prompt, titled(contour, "StyleShot Apply Style"), model=[checkpoint, 0], styleshot=loader, style=style)
    model = add(prompt, titled(aligned, "StyleAligned Batch Align"), model=model)
    vision = add(prompt, titled(inst, "Load CLIP Vision"))
    token = add(prompt, titled(inst, "InST Style Token"), clip_vision=vision, style_image=style_image)
    positive = add(prompt, titled(inst, "Prompt"), "InST prompt", clip=[checkpoint, 1], token=token, text=TEXT)
    content_map = add(prompt, titled(contour, "Contour"), image=add(prompt, titled(contour, "Content image")))
    content = add(
        prompt,
        titled(contour, "StyleShot Apply Content"),
        positive=positive,
        negative=out(prompt, "Negative prompt"),
        styleshot=loader,
        style=style,
        content_map=content_map,
    )
    titled(prompt, "Sampler")["inputs"].update(model=model, positive=content, negative=[content[0], 1])
    titled(prompt, "ChainTestModelProbe")["inputs"]["model"] = model
    return prompt


def bypassed(prompt, titles, object_info):
    """`prompt` with the nodes titled `titles` bypassed, as the frontend's graphToPrompt sends it."""
    prompt = copy.deepcopy(prompt)
    ids = {node_id(prompt, title) for title in titles}

    def through(link):
        while link is not None and link[0] in ids:
            node = prompt[link[0]]
            info = object_info[node["class_type"]]
            names = [*info["input_order"]["required"], *info["input_order"].get("optional", [])]
            types = {**info["input"]["required"], **info["input"].get("optional", {})}
            wanted = info["output"][link[1]]
            candidates = names[link[1] : link[1] + 1] + names  # the output's own index first
            name = next((n for n in candidates if types[n][0] == wanted), None)
            link = node["inputs"].get(name) if isinstance(node["inputs"].get(name), list) else None
        return link

    kept = {key: node for key, node in prompt.items() if key not in ids}
    for node in kept.values():
        for name, value in list(node["inputs"].items()):
            if isinstance(value, list):
                if (source := through(value)) is None:
                    del node["inputs"][name]  # no input of that type: the link is dropped
                else:
                    node["inputs"][name] = source
    return kept


def without_inst(prompt):
    """InST Text Encode has no CONDITIONING input, so it cannot be bypassed: take A's CLIP Text Encode
    of the same text instead, as a user would rewire it."""
    prompt = copy.deepcopy(prompt)
    inst_prompt = node_id(prompt, "InST prompt")
    for node in prompt.values():
        for name, value in node["inputs"].items():
            if value == [inst_prompt, 0]:
                node["inputs"][name] = out(prompt, "Prompt")
    return prompt


def with_stock_controlnet(prompt, before):
    """A stock ControlNet (Apply ControlNet on the content image) chained before or after Apply Content."""
    prompt = copy.deepcopy(prompt)
    downstream = titled(prompt, "StyleShot Apply Content" if before else "Sampler")
    apply = core(
        "ControlNetApplyAdvanced",
        positive=downstream["inputs"]["positive"],
        negative=downstream["inputs"]["negative"],
        control_net=add(prompt, core("ControlNetLoader", control_net_name=STOCK_CONTROLNET)),
        image=out(prompt, "Content image"),
        strength=1.0,
        start_percent=0.0,
        end_percent=1.0,
    )
    stock = add(prompt, apply, "Stock ControlNet")
    downstream["inputs"].update(positive=stock, negative=[stock[0], 1])
    return prompt


def with_other_pack(prompt, before):
    """Another pack's attn2 patch (tests/fixtures/chain_test_nodes) on the model before or after Apply Style."""
    prompt = copy.deepcopy(prompt)
    styled = out(prompt, "StyleShot Apply Style")
    consumer = prompt[styled[0]] if before else next(n for n in prompt.values() if n["inputs"].get("model") == styled)
    patch = core("ChainTestAttn2Offset", model=consumer["inputs"]["model"], term=0.1)
    consumer["inputs"]["model"] = add(prompt, patch, "Other pack's attn2 patch")
    return prompt


# --- runs ------------------------------------------------------------------------------------------


@dataclass
class Result:
    latent: torch.Tensor  # as the sampler returned it
    images: list  # the saved PNGs as arrays
    cached: set  # titles of the nodes ComfyUI took from its cache
    probe: dict


def run(server, prompt):
    """One prompt's results. Each run here executes its sampler: a prompt that ComfyUI takes wholly
    from its cache reports no outputs."""
    entry = server.run(prompt, timeout=1200)  # a 2-core CPU: the first chain loads every model
    latents = entry["outputs"][node_id(prompt, "SaveLatent")]["latents"]
    ((_, pngs),) = saved_pngs(server, prompt, entry).items()
    (cached,) = [data["nodes"] for event, data in entry["status"]["messages"] if event == "execution_cached"]
    return Result(
        latent=load_safetensors(server.view(latents[0]))["latent_tensor"],
        images=[np.asarray(Image.open(io.BytesIO(served)).convert("RGB")) for _, served in pngs],
        cached={prompt[key]["_meta"]["title"] for key in cached},
        probe=entry["outputs"][node_id(prompt, "ChainTestModelProbe")]["probe"][0],
    )


def assert_images(result):
    """A batch of finite latents and non-blank images at the content image's size."""
    assert result.latent.shape == (BATCH, 4, HEIGHT // 8, WIDTH // 8) and torch.isfinite(result.latent).all()
    assert len(result.images) == BATCH
    for image in result.images:
        assert image.shape == (HEIGHT, WIDTH, 3) and image.std() > 0


def same(a, b):
    return torch.equal(a.latent, b.latent) and all(np.array_equal(x, y) for x, y in zip(a.images, b.images))


CLEAN = {"norms": 61, "changed_norms": 0, "patches_replace": [], "patches": [], "object_patches": 0, "wrappers": []}


# --- 1. deleted and bypassed nodes leave nothing behind (first: A's first run is the server's first) --


def test_runs_after_the_pack_nodes_are_deleted_or_bypassed_equal_a_graph_that_never_had_them(server, object_info):
    assert server.get("/history") == {}, "A's first run must be this server's first prompt"
    first = run(server, plain())
    assert_images(first)
    assert first.probe == CLEAN

    chain = run(server, full_chain())
    assert chain.probe["changed_norms"] == 61 and chain.probe["patches_replace"] == [
        "attn1",
        "attn2",
    ]  # the probe sees patches
    assert not torch.equal(chain.latent, first.latent)

    deleted = run(server, plain())
    # the sampler ran again on the very MODEL the chain patched clones of (the checkpoint came from the cache)
    assert "Sampler" not in deleted.cached and "Load Checkpoint" in deleted.cached
    assert same(deleted, first) and deleted.probe == CLEAN

    with_everything = with_other_pack(with_stock_controlnet(full_chain(), before=True), before=False)
    assert not torch.equal(run(server, with_everything).latent, first.latent)

    bypass = bypassed(without_inst(full_chain()), PACK_NODES, object_info)
    assert (
        titled(bypass, "Sampler")["inputs"] == titled(plain(), "Sampler")["inputs"]
    )  # A's wiring, as the frontend sends it
    result = run(server, bypass)
    assert "Sampler" not in result.cached and "Load Checkpoint" in result.cached
    assert same(result, first) and result.probe == CLEAN


# --- 2. all four in one graph, each acting ---------------------------------------------------------


@pytest.fixture(scope="module")
def chain(server):
    return run(server, full_chain())


def test_style_content_stylealigned_and_inst_in_one_graph_each_acting(server, object_info, chain):
    assert_images(chain)
    assert chain.probe["patches_replace"] == ["attn1", "attn2"]
    graph = full_chain()
    for variant in [without_inst(graph), *(bypassed(graph, [title], object_info) for title in PACK_NODES)]:
        result = run(server, variant)
        assert_images(result)
        assert not np.array_equal(result.images[1], chain.images[1])  # each feature changes what is saved


# --- 3. a second, stock ControlNet -----------------------------------------------------------------


def test_a_stock_controlnet_before_or_after_the_content_controlnet(server, chain):
    before = run(server, with_stock_controlnet(full_chain(), before=True))
    after = run(server, with_stock_controlnet(full_chain(), before=False))
    assert_images(before)
    assert not torch.equal(before.latent, chain.latent)
    assert same(before, after)  # both residuals are summed: where the stock one sits does not matter


# --- 4. another pack's attn2 patch on the same layers ---------------------------------------------


def test_another_packs_attn2_patch_before_or_after_apply_style_both_terms_act(server, object_info, chain):
    graph = full_chain()
    other_alone = run(server, bypassed(with_other_pack(graph, before=True), ["StyleShot Apply Style"], object_info))
    style_alone = chain
    before, after = (run(server, with_other_pack(graph, order)) for order in (True, False))
    for both in (before, after):
        assert_images(both)
        assert not torch.equal(both.latent, style_alone.latent) and not torch.equal(both.latent, other_alone.latent)
    # the same two terms either way (kept as `previous`, or added through `.add()`), summed in another order
    assert (before.latent - after.latent).abs().max() < 0.01 * (before.latent - style_alone.latent).abs().max()
    # the later patch added onto the cached Apply Style output's copy, never onto that output itself
    again = run(server, graph)
    assert "Sampler" not in again.cached and "StyleShot Apply Style" in again.cached
    assert same(again, style_alone)
