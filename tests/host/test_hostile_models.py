"""Hostile models and batch layouts (issue 9, "Models") in a real ComfyUI (in this process, CPU).

- SD2, SDXL, SD3 and Flux MODELs, built from ComfyUI's own model classes, into every SD1.5-only node
  (StyleShot Apply Style, StyleShot Apply Content, InST Stochastic Inversion), and SD3 and Flux into every
  StyleAligned node: each is refused with its sentence before the first model call.
- A LoRA-patched SD1.5 MODEL (a kohya-format file through ComfyUI's LoraLoaderModelOnly) works in every
  SD1.5-only node, and the LoRA still acts.
- The batch layouts ComfyUI's sampler makes (cfg 1, several positive conds, area and mask conditioning, a
  batch split for memory) through Apply Style, Apply Content and Batch Align on the full-size random
  SD1.5 UNet: finite output, the feature acts, splitting changes nothing.
"""

import pytest
import torch

from fixtures import sd15_unet
from fixtures.sampling import ksample, prompt, recorded, relative
from fixtures.style_aligned_nodes import align
from fixtures.style_aligned_nodes import node as aligned_node
from fixtures.styleshot_nodes import Spy, apply, apply_content, binary_map, diffusers_control_image, tensors

SIZE = 8  # latent side (64 px): seconds per UNet call on a CPU; the middle block has 1 token
ROWS = 2  # latents per batch: StyleAligned needs its reference and one more image
LORA_RANK = 4

# What each architecture's sampler needs besides the latent: text width and pooled width (for SDXL's
# ADM, SD3's y and Flux's vec, as small as the tiny models below take them).
TEXT = {"sd2": (1024, None), "sdxl": (2048, 1280), "sd3": (4096, 64), "flux": (4096, 64)}


# --- models ---------------------------------------------------------------------------------------


def tiny_dit(kind, seed=0):
    """ComfyUI's own SD3 (MMDiT) or Flux model class from its comfy.supported_models config, with
    1-2 blocks 64-128 wide instead of the published billions of parameters, as a ModelPatcher."""
    import comfy.model_patcher
    import comfy.supported_models

    if kind == "sd3":
        config = comfy.supported_models.SD3(
            {
                "in_channels": 16,
                "patch_size": 2,
                "depth": 2,
                "input_size": None,
                "adm_in_channels": 64,
                "context_embedder_config": {
                    "target": "torch.nn.Linear",
                    "params": {"in_features": 4096, "out_features": 128},
                },
                "pos_embed_max_size": 16,
                "num_patches": 256,
                "pos_embed_scaling_factor": None,
                "x_block_self_attn_layers": [],
            }
        )
    elif kind == "flux":
        config = comfy.supported_models.Flux(
            {
                "image_model": "flux",
                "guidance_embed": True,
                "in_channels": 16,
                "out_channels": 16,
                "vec_in_dim": 64,
                "context_in_dim": 4096,
                "hidden_size": 64,
                "mlp_ratio": 4.0,
                "num_heads": 2,
                "depth": 1,
                "depth_single_blocks": 1,
                "axes_dim": [8, 12, 12],
                "theta": 10000,
                "patch_size": 2,
                "qkv_bias": True,
                "txt_ids_dims": [],
            }
        )
    else:
        raise ValueError(kind)
    config.set_inference_dtype(torch.float32, None)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(
        sd15_unet.randomize(config.get_model({}), seed), load_device=cpu, offload_device=cpu
    )


def other_model(kind):
    return tiny_dit(kind) if kind in ("sd3", "flux") else sd15_unet.tiny_comfy_model(kind)


def conditioning_for(kind, seed):
    width, pooled = TEXT[kind]
    return prompt(seed, 8, width, **({} if pooled is None else {"pooled_output": tensors(seed + 1, 1, pooled)}))


def latent_for(model):
    return {"samples": torch.zeros(1, model.model.latent_format.latent_channels, 8, 8)}


ARCHITECTURE = {"sd2": "SD20", "sdxl": "SDXL", "sd3": "SD3", "flux": "Flux"}  # ComfyUI's names (supported_models)


def sd1_refusal(feature, kind):
    """require_sd1's sentence: the node, what it needs, what this MODEL is, what to do."""
    return (
        rf"^{feature} needs an SD1\.x model \(like SD1\.5: 16 cross-attention layers reading 768-wide text "
        rf"tokens\), but this MODEL is {ARCHITECTURE[kind]}\b.*: load an SD1\.5-based checkpoint\.$"
    )


def invert(pack, model, positive, latent):
    """InST Stochastic Inversion at InST's settings (strength 0.7, 50 ddim_uniform steps), seed 0."""
    node = pack.NODE_CLASS_MAPPINGS["StyleSuiteInSTStochasticInversion"]()
    return node.invert(model, positive, latent, 0.7, 50, "ddim_uniform", 0)[0]["samples"]


# --- 1. architectures other than SD1.x -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sd2", "sdxl", "sd3", "flux"])
def test_sd1_only_nodes_refuse_other_architectures_before_any_model_call(comfy, pack, styleshot, style, kind):
    model = other_model(kind)
    options = repr(model.model_options)
    positive, negative = conditioning_for(kind, 1), conditioning_for(kind, 3)

    with pytest.raises(ValueError, match=sd1_refusal("StyleShot Apply Style", kind)):
        apply(pack, model, styleshot, style)
    with pytest.raises(ValueError, match=sd1_refusal("InST Stochastic Inversion", kind)):
        invert(pack, model, positive, {"samples": torch.zeros(1, 4, 8, 8)})
    # Apply Content takes conditioning only: the sampler meets the MODEL in the ControlNet's pre_run,
    # after it loaded the models and before the first step.
    content = apply_content(pack, positive, negative, styleshot, style, binary_map(1))
    spied, recorder = recorded(model)
    with pytest.raises(ValueError, match=sd1_refusal("StyleShot Apply Content", kind)):
        ksample(comfy, spied, *content, latent_for(model))
    assert recorder.calls == []
    assert repr(model.model_options) == options


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_style_aligned_nodes_refuse_diffusion_transformers(pack, kind):
    model = tiny_dit(kind)
    positive, negative, latent = conditioning_for(kind, 1), conditioning_for(kind, 3), latent_for(model)
    found = rf"{type(model.model).__name__} \({type(model.model.diffusion_model).__name__}\)"
    calls = {
        "StyleAligned Batch Align": lambda: align(pack, model),
        "StyleAligned Invert Reference": lambda: aligned_node(pack, "InvertReference").invert(
            model, positive, negative, latent, 3, "ddim_uniform", 2.0
        ),
        "StyleAligned Reference Apply": lambda: aligned_node(pack, "ReferenceApply").apply(
            model, positive, negative, latent, "renoise", 5, reference_latent=latent
        ),
    }
    for feature, call in calls.items():
        with pytest.raises(
            ValueError,
            match=rf"^{feature} works on Stable Diffusion UNet models \(SD1\.x, SD2\.x, SDXL\), "
            rf"but this MODEL is {found}, .* Load an SD1\.5 or SDXL checkpoint\.$",
        ):
            call()
    assert "patches_replace" not in model.model_options["transformer_options"] and not model.object_patches


def test_batch_align_works_on_an_sd2_class_model(comfy, pack):
    """SD2.x is a UNet with 1024-wide text: StyleAligned takes it (SDXL: test_style_aligned_inprocess)."""
    model = sd15_unet.tiny_comfy_model("sd2", seed=5)
    conds = conditioning_for("sd2", 1), conditioning_for("sd2", 3)
    latent = {"samples": torch.zeros(3, 4, SIZE, SIZE)}
    plain = ksample(comfy, model, *conds, latent)
    out = ksample(comfy, align(pack, model, group_norm=False), *conds, latent)
    assert torch.isfinite(out).all()
    assert relative(out[0], plain[0]) < 1e-4 and relative(out[1:], plain[1:]) > 1e-2


# --- 2. a LoRA-patched SD1.5 MODEL -----------------------------------------------------------------


@pytest.fixture(scope="module")
def lora(unets, tmp_path_factory):
    """(file name, layer count): a kohya-format LoRA (lora_unet_<diffusers module path>.lora_down /
    .lora_up / .alpha, fp16, rank 4) on the attention projections (to_q, to_k, to_v, to_out.0 of attn1
    and attn2) of SD1.5's 16 transformer blocks, random values, in a folder registered as ComfyUI's
    `loras`. Not on the feed-forwards: ComfyUI keeps a copy of each patched weight, and theirs are big."""
    import folder_paths
    from safetensors.torch import save_file

    layers = [
        (name, module)
        for name, module in unets[0].named_modules()
        if ".transformer_blocks." in name and ".attn" in name and isinstance(module, torch.nn.Linear)
    ]
    state = {}
    for i, (name, layer) in enumerate(layers):
        key = "lora_unet_" + name.replace(".", "_")
        state[f"{key}.lora_down.weight"] = (
            tensors(100 + 2 * i, LORA_RANK, layer.in_features).half() / layer.in_features**0.5
        )
        state[f"{key}.lora_up.weight"] = tensors(101 + 2 * i, layer.out_features, LORA_RANK).half() * 0.3
        state[f"{key}.alpha"] = torch.tensor(float(LORA_RANK)).half()
    folder = tmp_path_factory.mktemp("loras")
    save_file(state, folder / "style_suite_test_lora.safetensors")
    folder_paths.add_model_folder_path("loras", str(folder))
    return "style_suite_test_lora.safetensors", len(layers)


def with_lora(comfy, model, lora):
    return comfy[0].LoraLoaderModelOnly().load_lora_model_only(model, lora[0], 1.0)[0]


@pytest.fixture(scope="module")
def lora_sd15(comfy, sd15, lora):
    model = with_lora(comfy, sd15, lora)
    assert len(model.patches) == lora[1] == 16 * 8  # every key of the file found its layer
    return model


@pytest.fixture(scope="module")
def conds():
    return prompt(1), prompt(2)  # positive, negative


@pytest.fixture(scope="module")
def content_map():
    return binary_map(1, 8 * SIZE, 8 * SIZE)


def latent(rows=ROWS):
    return {"samples": torch.zeros(rows, 4, SIZE, SIZE)}


def test_a_lora_model_takes_apply_style_in_either_order_and_keeps_its_lora(
    comfy, pack, sd15, lora_sd15, lora, styleshot, style, conds
):
    lora_then_style = ksample(comfy, apply(pack, lora_sd15, styleshot, style), *conds, latent())
    style_then_lora = ksample(comfy, with_lora(comfy, apply(pack, sd15, styleshot, style), lora), *conds, latent())
    assert torch.isfinite(lora_then_style).all()
    assert torch.equal(lora_then_style, style_then_lora)  # weight patches and attn2 patches commute exactly
    assert (
        relative(lora_then_style, ksample(comfy, apply(pack, sd15, styleshot, style), *conds, latent())) > 1e-2
    )  # the LoRA acts
    assert relative(lora_then_style, ksample(comfy, lora_sd15, *conds, latent())) > 1e-2  # the style acts


def test_a_lora_model_samples_with_apply_content_and_keeps_its_lora(
    comfy, pack, sd15, lora_sd15, styleshot, style, conds, content_map
):
    content = apply_content(pack, *conds, styleshot, style, content_map)
    out = ksample(comfy, lora_sd15, *content, latent())
    assert torch.isfinite(out).all()
    assert relative(out, ksample(comfy, sd15, *content, latent())) > 1e-2  # the LoRA acts
    assert relative(out, ksample(comfy, lora_sd15, *conds, latent())) > 1e-2  # the content encoder acts


def test_a_lora_model_runs_insts_stochastic_inversion_and_keeps_its_lora(pack, sd15, lora_sd15, conds):
    content = {"samples": tensors(20, 1, 4, SIZE, SIZE) * 4}
    out = invert(pack, lora_sd15, conds[0], content)
    assert torch.isfinite(out).all()
    assert relative(out, invert(pack, sd15, conds[0], content)) > 1e-2  # the UNet's prediction used the LoRA


# --- 3. the batch layouts ComfyUI makes ------------------------------------------------------------

LAYOUTS = ["cfg 1", "two positive conds", "area", "mask"]
FEATURES = ["Apply Style", "Apply Content", "Batch Align"]
AREA = (4 * SIZE, 8 * SIZE, 4 * SIZE, 0)  # ConditioningSetArea width, height, x, y in pixels: the right half


def layout(comfy, name):
    """(positive, negative, cfg) built with ComfyUI's own conditioning nodes: a second positive prompt
    combined with the first, on the right half (area or mask) where the name says so."""
    nodes = comfy[0]
    positive, negative = prompt(1), prompt(2)
    if name == "cfg 1":
        return positive, negative, 1.0
    second = prompt(3)
    if name == "area":
        (second,) = nodes.ConditioningSetArea().append(second, *AREA, 1.0)
    elif name == "mask":
        right = torch.zeros(1, 8 * SIZE, 8 * SIZE)
        right[..., 4 * SIZE :] = 1
        (second,) = nodes.ConditioningSetMask().append(second, right, "default", 1.0)
    (positive,) = nodes.ConditioningCombine().combine(positive, second)
    return positive, negative, 4.0


def with_feature(pack, feature, model, positive, negative, styleshot, style, content_map):
    """(model, positive, negative) with one feature applied through its node."""
    if feature == "Apply Style":
        return apply(pack, model, styleshot, style), positive, negative
    if feature == "Apply Content":
        return (model, *apply_content(pack, positive, negative, styleshot, style, content_map))
    return align(pack, model), positive, negative


@pytest.fixture(scope="module")
def plain_runs(comfy, sd15):
    """KSampler on the unpatched MODEL per layout, computed once."""
    runs = {}

    def run(name):
        if name not in runs:
            positive, negative, cfg = layout(comfy, name)
            runs[name] = ksample(comfy, sd15, positive, negative, latent(), cfg=cfg)
        return runs[name]

    return run


def calls_made(recorder):
    """(sorted cond_or_uncond, latent height, width) of each UNet call: what ComfyUI batched."""
    return {(tuple(sorted(layout)), *x.shape[-2:]) for x, layout, _ in recorder.calls}


EXPECTED_CALLS = {  # 0 = a positive cond, 1 = the negative; each call's latent size
    "cfg 1": {((0,), SIZE, SIZE)},  # no negative at cfg 1
    "two positive conds": {((0, 0, 1), SIZE, SIZE)},
    # the area cond runs on its crop, with a negative copied onto the same area (comfy.samplers
    # create_cond_with_same_area_if_none); the rest as one full-size call
    "area": {((0, 1), SIZE, SIZE), ((0, 1), SIZE, SIZE // 2)},
    "mask": {((0, 0, 1), SIZE, SIZE)},  # a mask weighs the output; the model sees the whole latent
}


@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize("name", LAYOUTS)
def test_each_feature_acts_in_each_batch_layout(
    comfy, pack, sd15, styleshot, style, content_map, plain_runs, name, feature
):
    positive, negative, cfg = layout(comfy, name)
    model, positive, negative = with_feature(pack, feature, sd15, positive, negative, styleshot, style, content_map)
    model, recorder = recorded(model)
    out = ksample(comfy, model, positive, negative, latent(), cfg=cfg)
    plain = plain_runs(name)
    assert calls_made(recorder) == EXPECTED_CALLS[name]
    assert torch.isfinite(out).all()
    assert relative(out, plain) > 1e-2
    if feature == "Batch Align":  # the first image of every chunk, full or cropped, is the reference
        assert relative(out[0], plain[0]) < 1e-4 and relative(out[1:], plain[1:]) > 1e-2


@pytest.mark.parametrize("feature", FEATURES)
def test_a_batch_split_for_memory_gives_the_same_result(
    comfy, pack, sd15, styleshot, style, content_map, feature, monkeypatch
):
    """ComfyUI runs conds in separate UNet calls when their batch would not fit (comfy.samplers
    _calc_cond_batch asks model.memory_required): each feature must not depend on the grouping."""
    positive, negative, cfg = layout(comfy, "two positive conds")
    model, positive, negative = with_feature(pack, feature, sd15, positive, negative, styleshot, style, content_map)
    joint_model, joint = recorded(model)
    together = ksample(comfy, joint_model, positive, negative, latent(), cfg=cfg)
    monkeypatch.setattr(sd15.model, "memory_required", lambda *args, **kwargs: float("inf"))
    split_model, split = recorded(model)
    apart = ksample(comfy, split_model, positive, negative, latent(), cfg=cfg)
    monkeypatch.undo()
    assert calls_made(joint) == EXPECTED_CALLS["two positive conds"]
    assert sorted(tuple(layout) for _, layout, _ in split.calls) == [(0,)] * 4 + [(1,)] * 2  # 2 steps x 3 conds
    assert torch.isfinite(apart).all()
    assert relative(apart, together) < 1e-4


@pytest.mark.parametrize("map_fit", ["stretch, Lanczos (StyleShot)", "centre crop, nearest (ComfyUI)"])
def test_an_area_cond_gets_the_whole_content_map_fitted_to_its_area(
    comfy, pack, sd15, styleshot, style, content_map, map_fit, caplog
):
    """An area cond's UNet call gets only the area's crop of the latent, and the map is fitted to each
    call's latent: so an area sees the whole content map fitted to it (stretched, as StyleShot's
    pipeline resizes to a given size, or its centre, as any ComfyUI ControlNet crops), not the part
    of the map under it. The console says what happens."""
    positive, negative, cfg = layout(comfy, "area")
    content = apply_content(pack, positive, negative, styleshot, style, content_map, map_fit=map_fit)
    spy = Spy(styleshot.adapter_file.content.control_model)
    try:
        with caplog.at_level("WARNING"):
            ksample(comfy, sd15, *content, latent(), cfg=cfg)
    finally:
        spy.close()
    whole = content_map.movedim(-1, 1)  # [1, 3, 64, 64]
    width = AREA[0]
    hints = {tuple(call["hint"].shape[-2:]): call["hint"] for call in spy.calls}
    assert set(hints) == {(8 * SIZE, 8 * SIZE), (AREA[1], width)}
    assert torch.equal(hints[(8 * SIZE, 8 * SIZE)][:1], whole)
    area_hint = hints[(AREA[1], width)]
    if map_fit.startswith("centre"):
        fitted = whole[..., (whole.shape[-1] - width) // 2 : (whole.shape[-1] + width) // 2]
    else:
        fitted = diffusers_control_image(content_map, height=AREA[1], width=width)
    assert torch.equal(area_hint, fitted.expand_as(area_hint))
    assert not torch.equal(area_hint[:1], whole[..., AREA[2] : AREA[2] + width])  # not the part under the area
    assert f"the content map is {8 * SIZE}x{8 * SIZE} but the latent is {AREA[0]}x{AREA[1]}" in caplog.text
    assert "an area gets the whole map fitted to it" in caplog.text
