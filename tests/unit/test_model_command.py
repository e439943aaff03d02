"""The `models` command (loaders/models_command.py, model_status.py, model_folders.py, download.py):
model folders found as ComfyUI finds them, each file checked as its loader reads it, misplaced files
named, downloads that resume, refuse what is not the published file and never leave a half file under
the final name.

Fixture files have the published layouts; the StyleShot ones hold one number per tensor and the CLIP
one is sparse, so they cost almost no disk. Where a test needs the published size or hash, the
entries are patched to the fixture files' (`published`). Downloads come from a local hub (fixtures/hub.py).
"""

import dataclasses
import hashlib
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from safetensors.torch import save_file

from fixtures import annotators, inst, styleshot
from fixtures.clip_models import vision_l_layout, write_zero_safetensors
from fixtures.hub import Hub
from fixtures.sd15_checkpoint import header_checkpoint, sd15_layout
from fixtures.sdxl_checkpoint import sdxl_layout
from style_suite.loaders import layouts, model_status
from style_suite.loaders.download import DownloadError, download
from style_suite.loaders.model_files import (
    ALL,
    CLIP_VISION_L,
    HED,
    INST_STYLE,
    LINEART_COARSE,
    LINEART_FINE,
    SD15_CHECKPOINT,
    SDXL_CHECKPOINT,
    STYLE_ENCODER,
    STYLESHOT_CONTOUR,
    STYLESHOT_LINEART,
)
from style_suite.loaders.model_folders import ConfigError, extra_model_paths, model_folders
from style_suite.loaders.model_status import check_all, check_file, check_published
from style_suite.loaders.models_command import main
from style_suite.loaders.weights import ModelFileError


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One file of each kind, to link into model folders."""
    folder = tmp_path_factory.mktemp("sources")
    adapter = styleshot.layout_only(styleshot.adapter_layout())
    files = {
        "hed": annotators.write_hed(folder / "hed.pth"),
        "lineart": annotators.write_lineart(folder / "lineart.pth"),
        "encoder": folder / "encoder.bin",
        "contour": folder / "contour.bin",
        "stage1": folder / "stage1.bin",
        "clip": write_zero_safetensors(folder / "clip.safetensors", vision_l_layout()),
        "inst": folder / "style.pt",
        "sd15": write_zero_safetensors(folder / "sd15.safetensors", sd15_layout()),  # full size, sparse
        "sdxl": write_zero_safetensors(folder / "sdxl.safetensors", sdxl_layout()),
    }
    torch.save(styleshot.layout_only(styleshot.encoder_layout(), torch.float16), files["encoder"])
    torch.save(styleshot.layout_only(styleshot.ip_bin_layout()), files["contour"])
    torch.save(adapter, files["stage1"])
    inst.write_inst(files["inst"])
    return files


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


PUBLISHED_AS = {
    HED.name: "hed",
    LINEART_FINE.name: "lineart",
    LINEART_COARSE.name: "lineart",
    STYLE_ENCODER.name: "encoder",
    STYLESHOT_CONTOUR.name: "contour",
    STYLESHOT_LINEART.name: "contour",
    CLIP_VISION_L.name: "clip",
    SD15_CHECKPOINT.name: "sd15",
    SDXL_CHECKPOINT.name: "sdxl",
}


@pytest.fixture
def published(monkeypatch, sources):
    """model_status.ALL with the fixture files' sizes (and the annotators' sha256) as the published ones."""

    def entry(model_file):
        source = sources.get(PUBLISHED_AS.get(model_file.name))
        if source is None:
            return model_file
        digest = sha256(source) if model_file.folder == "annotators" else ""
        return dataclasses.replace(model_file, size_bytes=os.path.getsize(source), sha256=digest)

    entries = tuple(entry(model_file) for model_file in ALL)
    monkeypatch.setattr(model_status, "ALL", entries)
    return {model_file.name: model_file for model_file in entries}


def place(folder, name, source):
    """Link `source` into `folder` as `name` (the fixtures are read, never changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.link(source, folder / name)
    return folder / name


@pytest.fixture
def models(tmp_path, sources):
    """A folder laid out like ComfyUI/models with the five required files."""
    root = tmp_path / "models"
    place(root / "checkpoints", SD15_CHECKPOINT.name, sources["sd15"])
    place(root / "annotators", HED.name, sources["hed"])
    place(root / "annotators", LINEART_FINE.name, sources["lineart"])
    place(root / "styleshot", STYLE_ENCODER.name, sources["encoder"])
    place(root / "styleshot", STYLESHOT_CONTOUR.name, sources["contour"])
    return root


def run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out.rstrip("\n"), err


def section(report, name):
    """The lines a report prints for one file."""
    start = report.index(f"\n{name} (")
    return report[start : report.index("\n\n", start + 1)]


def status_of(statuses, model_file):
    return next(s for s in statuses if s.model_file.name == model_file.name)


# ---------------------------------------------------------------- model folders


def test_extra_model_paths_are_read_by_comfyuis_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLE_SUITE_DATA", str(tmp_path / "env"))
    config = tmp_path / "config" / "extra_model_paths.yaml"
    config.parent.mkdir()
    config.write_text(
        "shared:\n"
        "    base_path: data\n"  # relative to the yaml's folder
        "    annotators: |\n"
        "        annotators\n"
        "        /abs/annotators\n"
        "local:\n"
        "    inst: my_inst\n"  # no base_path: relative to the yaml's folder too
        "from_env:\n"
        "    base_path: $STYLE_SUITE_DATA\n"
        "    styleshot: styleshot\n"
        "fast:\n"
        "    is_default: true\n"
        "    clip_vision: /fast/clip_vision\n"
        "unused:\n"
    )
    here = str(tmp_path / "config")
    assert extra_model_paths(config) == [
        ("annotators", f"{here}/data/annotators", False),
        ("annotators", "/abs/annotators", False),
        ("inst", f"{here}/my_inst", False),
        ("styleshot", f"{tmp_path}/env/styleshot", False),
        ("clip_vision", "/fast/clip_vision", True),
    ]

    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    (comfyui / "extra_model_paths.yaml").write_text(
        "mine:\n    annotators: /mine/annotators\n    clip_vision: /mine/clip\n"
    )
    folders = model_folders(comfyui, extra_configs=[config], models_dirs=[tmp_path / "first"])
    models = f"{comfyui}/models"
    assert folders == {
        # --models-dir first; then ComfyUI's order: its own clip_vision folder before the yaml entries
        # (is_default moves one to the front), the pack's folders after them (registered later)
        "annotators": [
            f"{tmp_path}/first/annotators",
            "/mine/annotators",
            f"{here}/data/annotators",
            "/abs/annotators",
            f"{models}/annotators",
        ],
        "styleshot": [f"{tmp_path}/first/styleshot", f"{tmp_path}/env/styleshot", f"{models}/styleshot"],
        "inst": [f"{tmp_path}/first/inst", f"{here}/my_inst", f"{models}/inst"],
        "clip_vision": [f"{tmp_path}/first/clip_vision", "/fast/clip_vision", f"{models}/clip_vision", "/mine/clip"],
        "checkpoints": [f"{tmp_path}/first/checkpoints", f"{models}/checkpoints"],
    }


def test_unreadable_configs_and_missing_pyyaml_are_explained(tmp_path, monkeypatch):
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text("mine:\n    annotators: [a, b]\n")
    with pytest.raises(ConfigError, match="'annotators' is \\['a', 'b'\\]; ComfyUI expects a path"):
        extra_model_paths(config)
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ConfigError, match="needs PyYAML"):
        extra_model_paths(config)


def test_the_command_needs_to_know_where_comfyui_is(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    code, out, err = run(capsys)
    assert code == 2 and "--comfyui PATH or the COMFYUI_PATH environment variable" in err and out == ""
    code, _, err = run(capsys, "--comfyui", tmp_path)
    assert code == 2 and "is not a ComfyUI folder (it has no models/ folder)" in err


# ---------------------------------------------------------------- what a file is


def test_each_kind_of_file_is_recognised_in_its_slot(sources):
    assert check_file(HED, sources["hed"]) == "HED network, fp16"
    lineart = check_file(LINEART_COARSE, sources["lineart"])
    assert (
        lineart.startswith("lineart generator, fp32") and "sk_model.pth and sk_model2.pth share this layout" in lineart
    )
    assert check_file(STYLE_ENCODER, sources["encoder"]) == "StyleShot style-aware encoder, fp16"
    adapter = check_file(STYLESHOT_LINEART, sources["contour"])
    assert adapter.startswith("StyleShot adapter with content-fusion encoder, fp32")
    assert "the contour and lineart releases share this layout" in adapter
    assert check_file(INST_STYLE, sources["inst"]) == "style file: InST"
    assert check_file(CLIP_VISION_L, sources["clip"]) == "CLIP ViT-L/14 vision model, fp16"


def test_the_packs_vit_l_layout_is_transformers(sources):
    assert layouts.vit_l_layout() == {k: v for k, v in vision_l_layout().items() if not k.endswith("position_ids")}


def test_clip_files_are_checked_by_their_header(tmp_path):
    layout = vision_l_layout()
    both_towers = {
        **layout,
        "vision_model.embeddings.position_ids": (1, 257),
        "text_model.final_layer_norm.weight": (768,),
        "text_projection.weight": (768, 768),
        "logit_scale": (),
    }
    path = write_zero_safetensors(tmp_path / "openai.safetensors", both_towers, dtype="F32")
    assert check_file(CLIP_VISION_L, path) == "CLIP ViT-L/14 vision model, fp32, with its text model"

    vit_h = write_zero_safetensors(tmp_path / "vit_h.safetensors", styleshot.clip_layout(prefix=""))
    with pytest.raises(ModelFileError) as error:
        check_file(CLIP_VISION_L, vit_h)
    assert str(error.value).startswith("vit_h.safetensors is not a CLIP ViT-L/14 vision model")
    assert "It looks like CLIP ViT-H/14 (IP-Adapter's image encoder, not InST's)" in str(error.value)

    short = write_zero_safetensors(
        tmp_path / "short.safetensors", {k: v for k, v in layout.items() if ".layers.23." not in k}
    )
    with pytest.raises(ModelFileError, match="16 missing keys \\(first: vision_model.encoder.layers.23"):
        check_file(CLIP_VISION_L, short)

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(
        ModelFileError, match="truncated.safetensors could not be read as a weights file: it is cut short"
    ):
        check_file(CLIP_VISION_L, truncated)


def test_checkpoints_are_told_apart_by_their_header(sources, tmp_path):
    assert check_file(SD15_CHECKPOINT, sources["sd15"]) == "SD1.x checkpoint (UNet, text encoder, VAE), fp16"
    assert check_file(SDXL_CHECKPOINT, sources["sdxl"]) == "SDXL checkpoint (UNet, text encoder, VAE), fp16"
    with pytest.raises(
        ModelFileError, match="sdxl.safetensors is an SDXL checkpoint, and this workflow is made for SD1.x"
    ):
        check_file(SD15_CHECKPOINT, sources["sdxl"])
    layout = sd15_layout()
    unet_only = write_zero_safetensors(
        tmp_path / "unet.safetensors",
        {k[len("model.diffusion_model.") :]: v for k, v in layout.items() if k.startswith("model.")},
    )
    with pytest.raises(
        ModelFileError, match="unet.safetensors is not a Stable Diffusion SD1.x checkpoint: it holds a UNet-less"
    ):
        check_file(SD15_CHECKPOINT, unet_only)  # ComfyUI's diffusion_models layout has no prefix
    no_vae = write_zero_safetensors(
        tmp_path / "no_vae.safetensors", {k: v for k, v in layout.items() if "first_stage" not in k}
    )
    with pytest.raises(ModelFileError, match="holds an SD1.x UNet without first_stage_model."):
        check_file(SD15_CHECKPOINT, no_vae)
    # the published file stores the text encoder's position ids as int64: read past, not refused
    small = header_checkpoint()
    assert small["cond_stage_model.transformer.text_model.embeddings.position_ids"].dtype == torch.int64
    save_file(small, str(tmp_path / "with_ids.safetensors"))
    assert check_file(SD15_CHECKPOINT, tmp_path / "with_ids.safetensors").startswith("SD1.x checkpoint")


def test_a_checkpoint_of_another_name_is_never_to_be_renamed(models, sources, published, capsys):
    (models / "checkpoints" / SD15_CHECKPOINT.name).unlink()
    place(models / "checkpoints", "dreamshaper_8.safetensors", sources["sd15"])  # the user's own model
    code, report, _ = run(capsys, "--models-dir", models)
    assert code == 1 and "status:  missing" in section(report, SD15_CHECKPOINT.name)
    assert "dreamshaper" not in report
    assert (
        f"- {SD15_CHECKPOINT.name}: download {SD15_CHECKPOINT.name} (2132.7 MB) from {SD15_CHECKPOINT.url} into "
        f"{models}/checkpoints; or run this command again with --download {SD15_CHECKPOINT.name}; or choose "
        "another model of its kind in the workflow instead"
    ) in report


def test_the_stage1_adapter_is_refused_where_content_fusion_is_needed(sources):
    with pytest.raises(ModelFileError) as error:
        check_file(STYLESHOT_CONTOUR, sources["stage1"])
    assert str(error.value).startswith("stage1.bin is the stage-1 release without the content-fusion encoder")
    assert STYLESHOT_CONTOUR.url in str(error.value)


# ---------------------------------------------------------------- the report and its exit status


def test_a_ready_folder_passes_and_optional_files_are_only_reported(models, sources, published, capsys):
    place(models / "clip_vision", CLIP_VISION_L.name, sources["clip"])
    code, report, _ = run(capsys, "--models-dir", models)
    assert code == 0 and report.endswith("All required model files are in place.")
    hed = section(report, HED.name)
    assert f"folder:  {models}/annotators" in hed and f"file:    {models}/annotators/{HED.name}" in hed
    assert "status:  ok: HED network, fp16" in hed
    assert "status:  ok: CLIP ViT-L/14 vision model, fp16" in section(report, CLIP_VISION_L.name)
    coarse = section(report, LINEART_COARSE.name)
    assert coarse.startswith(f"\n{LINEART_COARSE.name} (optional)") and "status:  missing" in coarse
    assert "found as" not in coarse  # sk_model.pth has the same layout, but it is its own slot's file
    assert f"- {LINEART_COARSE.name}: (optional) download {LINEART_COARSE.name} (17.2 MB)" in report
    assert section(report, INST_STYLE.name).startswith(f"\n{INST_STYLE.name} (any name, optional)")
    assert "status:  none" in section(report, INST_STYLE.name)


def test_a_missing_required_file_fails_and_says_where_to_get_it(models, published, capsys):
    (models / "annotators" / HED.name).unlink()
    code, report, _ = run(capsys, "--models-dir", models)
    assert code == 1 and report.endswith(f"Not ready: {HED.name}.")
    assert "status:  missing" in section(report, HED.name)
    assert (
        f"- {HED.name}: download {HED.name} (29.4 MB) from {HED.url} into {models}/annotators; "
        f"or run this command again with --download {HED.name}"
    ) in report


def test_a_truncated_file_is_invalid(models, sources, published, capsys):
    hed = models / "annotators" / HED.name
    hed.unlink()
    hed.write_bytes(Path(sources["hed"]).read_bytes()[:10_000_000])
    code, report, _ = run(capsys, "--models-dir", models)
    assert code == 1
    assert f"status:  invalid: {HED.name} could not be read as a weights file" in section(report, HED.name)
    assert f"- {HED.name}: replace {hed}: download {HED.name}" in report


def test_a_file_of_another_size_than_the_published_one_is_invalid(models, published, monkeypatch, capsys):
    size = published[HED.name].size_bytes
    monkeypatch.setattr(
        model_status,
        "ALL",
        tuple(dataclasses.replace(m, size_bytes=size + 1) if m.name == HED.name else m for m in model_status.ALL),
    )
    code, report, _ = run(capsys, "--models-dir", models)
    assert code == 1
    assert (
        f"invalid: {HED.name} is {size:,} bytes; the published {HED.name} is {size + 1:,} bytes: "
        "an incomplete download or another file"
    ) in section(report, HED.name)


def test_sha256_is_compared_with_hash_only(models, published, monkeypatch, capsys):
    monkeypatch.setattr(
        model_status,
        "ALL",
        tuple(dataclasses.replace(m, sha256="0" * 64) if m.name == HED.name else m for m in model_status.ALL),
    )
    assert run(capsys, "--models-dir", models)[0] == 0
    code, report, _ = run(capsys, "--models-dir", models, "--hash")
    assert code == 1
    assert f"has sha256 {sha256(models / 'annotators' / HED.name)}; the published {HED.name} has {'0' * 64}" in report


def test_a_file_of_another_slot_is_named(models, sources, published, capsys):
    hed = models / "annotators" / HED.name
    hed.unlink()
    place(hed.parent, HED.name, sources["lineart"])
    code, report, _ = run(capsys, "--models-dir", models)
    assert code == 1
    assert "It looks like the lineart generator (sk_model.pth or sk_model2.pth" in section(report, HED.name)


def test_an_unrenamed_ip_bin_is_found_by_its_content(models, published, capsys):
    styleshot_folder = models / "styleshot"
    (styleshot_folder / STYLESHOT_CONTOUR.name).rename(styleshot_folder / "ip.bin")
    code, report, _ = run(capsys, "--models-dir", models)
    assert code == 1
    contour = section(report, STYLESHOT_CONTOUR.name)
    assert "status:  missing" in contour
    assert f"found as ip.bin in {styleshot_folder}: StyleShot adapter with content-fusion encoder" in contour
    assert "the contour and lineart releases share this layout: the file cannot say which one it is" in contour
    assert (
        f"- {STYLESHOT_CONTOUR.name}: rename {styleshot_folder}/ip.bin to {styleshot_folder}/{STYLESHOT_CONTOUR.name}"
        in report
    )


def test_a_converted_safetensors_is_found_and_not_held_to_the_published_size(models, published):
    styleshot_folder = models / "styleshot"
    (styleshot_folder / STYLESHOT_CONTOUR.name).unlink()
    converted = styleshot_folder / "styleshot_contour_ip.safetensors"
    save_file(styleshot.random_tensors(styleshot.adapter_layout(), 0), str(converted))  # no content fusion
    status = status_of(check_all(model_folders(models_dirs=[models])), STYLESHOT_CONTOUR)
    assert [found.path for found in status.present] == [str(converted)] and not status.ok
    assert status.present[0].problem.startswith(f"{converted.name} is the stage-1 release")  # its content is checked
    entry = published[STYLESHOT_CONTOUR.name]
    check_published(entry, converted)  # another format than the published ip.bin: its size is its own
    same_bytes_as_bin = styleshot_folder / "copy.bin"
    same_bytes_as_bin.write_bytes(converted.read_bytes())
    with pytest.raises(ModelFileError, match=f"the published ip.bin is {entry.size_bytes:,} bytes"):
        check_published(entry, same_bytes_as_bin)


def test_extra_model_paths_folders_are_searched(tmp_path, models, published, monkeypatch, capsys):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    (comfyui / "extra_model_paths.yaml").write_text(
        f"elsewhere:\n    base_path: {models}\n    annotators: annotators\n"
        "    styleshot: styleshot\n    checkpoints: checkpoints\n"
    )
    monkeypatch.setenv("COMFYUI_PATH", str(comfyui))
    code, report, _ = run(capsys)
    assert code == 0
    assert f"  annotators: {models}/annotators, {comfyui}/models/annotators" in report
    assert f"file:    {models}/styleshot/{STYLE_ENCODER.name}" in section(report, STYLE_ENCODER.name)
    assert run(capsys, "--comfyui", comfyui)[0] == 0


def test_inst_styles_of_any_name_are_reported_and_only_broken_ones_fail(models, sources, published, capsys):
    place(models / "inst", "monet.pt", sources["inst"])
    code, report, _ = run(capsys, "--models-dir", models)
    assert code == 0 and f"file:    {models}/inst/monet.pt\n  status:  ok: style file: InST" in report
    (models / "inst" / "broken.pt").write_bytes(b"not a torch file")
    code, report, _ = run(capsys, "--models-dir", models)
    assert code == 1 and f"file:    {models}/inst/broken.pt\n  status:  invalid: broken.pt " in report


# ---------------------------------------------------------------- downloads


@pytest.fixture
def hub(monkeypatch):
    with Hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture(scope="module")
def lineart(sources):
    """sk_model.pth's bytes and its entry with their size and sha256."""
    data = Path(sources["lineart"]).read_bytes()
    return data, dataclasses.replace(LINEART_FINE, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def resolve_path(model_file):
    return urlparse(model_file.url).path


def test_a_download_follows_the_redirect_and_lands_under_its_final_name(tmp_path, hub, lineart):
    data, entry = lineart
    hub.serve(entry, data)
    calls = []
    path = download(entry, tmp_path / "annotators", progress=lambda done, total: calls.append((done, total)))
    assert path == tmp_path / "annotators" / entry.name and path.read_bytes() == data
    assert os.listdir(tmp_path / "annotators") == [entry.name]
    assert [p for p, _ in hub.requests] == [resolve_path(entry), "/cdn" + resolve_path(entry)]
    assert calls[-1] == (len(data), len(data))


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, hub, lineart):
    data, entry = lineart
    hub.serve(entry, data)
    hub.cut_after = 5_000_000
    with pytest.raises(DownloadError) as error:
        download(entry, tmp_path)
    part = tmp_path / f"{entry.name}.part"
    assert f"the partial file {part} (5,000,000 bytes) is kept: run again to resume" in str(error.value)
    assert part.stat().st_size == 5_000_000 and not (tmp_path / entry.name).exists()
    hub.requests.clear()
    assert download(entry, tmp_path).read_bytes() == data  # the sha256 covers the kept part and the rest
    assert hub.requests == [(resolve_path(entry), "bytes=5000000-"), ("/cdn" + resolve_path(entry), "bytes=5000000-")]
    assert not part.exists()


def test_a_server_that_ignores_range_restarts_the_file(tmp_path, hub, lineart):
    data, entry = lineart
    hub.serve(entry, data)
    hub.ignore_range = True
    (tmp_path / f"{entry.name}.part").write_bytes(b"x" * 1000)  # would corrupt the file if appended to
    assert download(entry, tmp_path).read_bytes() == data
    assert hub.requests[-1][1] == "bytes=1000-"


def test_a_complete_part_is_finished_when_the_server_answers_416(tmp_path, hub, lineart):
    data, entry = lineart
    hub.serve(entry, data)
    (tmp_path / f"{entry.name}.part").write_bytes(data)
    assert download(entry, tmp_path).read_bytes() == data
    assert hub.requests[-1] == ("/cdn" + resolve_path(entry), f"bytes={len(data)}-")


def test_a_hash_mismatch_keeps_nothing(tmp_path, hub, lineart):
    data, entry = lineart
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    hub.serve(entry, bytes(damaged))
    with pytest.raises(ModelFileError) as error:
        download(entry, tmp_path)
    got = hashlib.sha256(damaged).hexdigest()
    assert f"its sha256 is {got}, the published file's is {entry.sha256}" in str(error.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("answer", ["short", "web page"])
def test_another_size_is_refused_before_the_transfer(tmp_path, hub, lineart, answer):
    data, entry = lineart
    hub.serve(entry, data[:-1000])
    hub.html = answer == "web page"
    with pytest.raises(ModelFileError) as error:
        download(entry, tmp_path)
    message = str(error.value)
    assert f"but {entry.name} is {len(data):,} bytes" in message and "Nothing was kept" in message
    assert ("a web page (text/html), not the file" in message) == hub.html
    assert f"{len(data) - 1000:,} bytes" in message or hub.html
    assert os.listdir(tmp_path) == []


def test_a_file_of_the_right_size_but_the_wrong_content_is_refused(tmp_path, hub, lineart):
    data, _ = lineart
    entry = dataclasses.replace(HED, size_bytes=len(data), sha256="")  # no hash to catch it
    hub.serve(entry, data)
    with pytest.raises(ModelFileError) as error:
        download(entry, tmp_path)
    assert f"The download of {HED.name} from {hub.url}{resolve_path(HED)} is not the published file" in str(error.value)
    assert "It looks like the lineart generator" in str(error.value)
    assert os.listdir(tmp_path) == []


def test_a_page_to_choose_from_is_not_downloaded(tmp_path, hub):
    with pytest.raises(ModelFileError, match="has no direct download: https://drive.google.com/"):
        download(INST_STYLE, tmp_path / "inst")
    assert hub.requests == [] and not (tmp_path / "inst").exists()


def test_the_download_option_fetches_missing_required_files(models, sources, published, hub, capsys):
    (models / "annotators" / HED.name).unlink()
    hub.serve(HED, Path(sources["hed"]).read_bytes())
    code, report, err = run(capsys, "--models-dir", models, "--download")
    assert code == 0 and "status:  ok: HED network, fp16" in section(report, HED.name)
    assert (models / "annotators" / HED.name).read_bytes() == Path(sources["hed"]).read_bytes()
    assert {path for path, _ in hub.requests} == {resolve_path(HED), "/cdn" + resolve_path(HED)}  # no optional file
    assert f"{published[HED.name].size_bytes / 1e6:,.1f} of" in err and "(100%)" in err

    code, _, err = run(capsys, "--models-dir", models, "--download", LINEART_COARSE.name)  # not served: 404
    assert code == 1 and f"Downloading {LINEART_COARSE.name} from {hub.url}" in err and "HTTP Error 404" in err
    code, _, err = run(capsys, "--models-dir", models, "--download", HED.name)
    assert code == 0 and f"{HED.name}: already there, not downloaded" in err
    # with names, the exit status is about the files named (those one workflow needs)
    (models / "annotators" / LINEART_FINE.name).unlink()
    assert run(capsys, "--models-dir", models, "--download", HED.name)[0] == 0
    assert run(capsys, "--models-dir", models)[0] == 1


def test_the_download_option_replaces_an_unusable_file(models, sources, published, hub, capsys):
    hed = models / "annotators" / HED.name
    hed.unlink()
    hed.write_bytes(b"<html>an error page saved by a browser</html>")
    hub.serve(HED, Path(sources["hed"]).read_bytes())
    code, _, err = run(capsys, "--models-dir", models, "--download", HED.name)
    assert code == 0 and "replacing the unusable file once the download is checked" in err
    assert hed.read_bytes() == Path(sources["hed"]).read_bytes()
