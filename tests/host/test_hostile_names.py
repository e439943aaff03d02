"""Model file names that try to escape, posted to a real ComfyUI server as a headless user posts
them: `..`, absolute paths, a link in a model folder that leads out of every model folder, names
not in the folder, and a name that only arrives at run time through a link from another node. For
every model input of the pack each is refused, and what it names outside the model folders is
never read: those files are valid model files, so reading one would have made the node work."""

import json
import shutil

import pytest

from fixtures.shipped_workflows import API_DIR, at_test_scale, load, titled

# input: (node class, model folder, the shipped file it takes, workflow, title of its node)
INPUTS = {
    "Contour hed_model": (
        "StyleSuiteStyleShotContour",
        "annotators",
        "ControlNetHED.pth",
        "contour_preview",
        "Contour",
    ),
    "HED Soft Edges hed_model": (
        "StyleSuiteHEDSoftEdges",
        "annotators",
        "ControlNetHED.pth",
        "contour_preview",
        "Contour",
    ),
    "Lineart lineart_model": ("StyleSuiteLineart", "annotators", "sk_model.pth", "lineart_preview", "Lineart"),
    "StyleShot Loader style_encoder": (
        "StyleSuiteStyleShotLoader",
        "styleshot",
        "style_aware_encoder.bin",
        "styleshot_text_driven",
        "StyleShot Loader",
    ),
    "StyleShot Loader adapter": (
        "StyleSuiteStyleShotLoader",
        "styleshot",
        "styleshot_contour_ip.bin",
        "styleshot_text_driven",
        "StyleShot Loader",
    ),
    "InST Style Token style_file": (
        "StyleSuiteInSTStyleToken",
        "inst",
        "embeddings.pt",
        "inst_style_transfer",
        "InST Style Token",
    ),
}
SOFT_EDGES_INPUTS = {"safe": False, "resolution": 0}  # HED Soft Edges in place of Contour


def prompt_with(key, value):
    """The input's shipped workflow at test scale, with the input set to `value`."""
    node_class, *_, workflow, title = INPUTS[key]
    prompt = at_test_scale(load(API_DIR / f"{workflow}.json"))
    node = titled(prompt, title)
    if node["class_type"] != node_class:  # HED Soft Edges: the contour workflow with its node swapped
        node["class_type"] = node_class
        node["inputs"] = {"image": node["inputs"]["image"], "hed_model": None, **SOFT_EDGES_INPUTS}
    node["inputs"][key.split()[-1]] = value
    return prompt


@pytest.fixture(scope="module")
def outside(model_root, tmp_path_factory):
    """A folder outside every model folder holding a valid copy of each input's file, and in each
    model folder a link to that copy (`out_<file>`) and a link into another model folder
    (`in_<file>`, to a copy in clip_vision/). Removed after the module."""
    folder = tmp_path_factory.mktemp("outside_the_model_folders")
    made = []
    for _, model_folder, name, *_ in INPUTS.values():
        original = model_root / model_folder / name
        for copy in (folder / name, model_root / "clip_vision" / f"copy_{name}"):
            shutil.copyfile(original, copy)
        for link, target in (
            (f"out_{name}", folder / name),
            (f"in_{name}", model_root / "clip_vision" / f"copy_{name}"),
        ):
            path = model_root / model_folder / link
            if not path.is_symlink():
                path.symlink_to(target)
                made.append(path)
        made.append(model_root / "clip_vision" / f"copy_{name}")
    yield folder
    for path in made:
        path.unlink(missing_ok=True)


def refusal(server, prompt):
    """What /prompt answered for a prompt it refused before running."""
    status, answer = server.post("/prompt", {"prompt": prompt})
    assert status == 400, f"the server queued it: {answer}"
    return json.dumps(answer["node_errors"])


@pytest.mark.parametrize("key", INPUTS)
def test_names_outside_the_folder_are_refused_before_running(server, outside, key):
    _, folder, name, *_ = INPUTS[key]
    for posted in (f"../../{outside.name}/{name}", f"../{folder}/{name}", str(outside / name), "not_there.pth"):
        details = refusal(server, prompt_with(key, posted))
        assert f"'{posted}' was not found in the '{folder}' model folder; this input needs {name}" in details, details


@pytest.mark.parametrize("key", INPUTS)
def test_a_link_out_of_the_model_folders_is_refused_and_a_link_between_them_works(server, outside, key):
    _, folder, name, *_ = INPUTS[key]
    listed = server.get(f"/models/{folder}")
    assert f"out_{name}" in listed and f"in_{name}" in listed  # ComfyUI lists links: the check is ours
    details = refusal(server, prompt_with(key, f"out_{name}"))
    assert (
        f"'out_{name}' in the '{folder}' model folder is a link to {outside / name}, outside every model folder"
        in details
    )
    assert "extra_model_paths.yaml" in details
    server.run(prompt_with(key, f"in_{name}"))  # linking big files in from another model folder keeps working


@pytest.mark.parametrize("key", INPUTS)
def test_a_name_that_arrives_through_a_link_is_checked_when_it_arrives(server, outside, key):
    """ComfyUI validates a linked input without its value (the pack's check sees None), so the value
    another node outputs at run time is checked before anything is opened."""
    prompt = prompt_with(key, ["escape_switch", 0])
    posted = f"../../{outside.name}/{INPUTS[key][2]}"
    prompt["escape_name"] = {"class_type": "CustomCombo", "inputs": {"choice": posted}}
    prompt["escape_switch"] = {
        "class_type": "ComfySwitchNode",
        "inputs": {"switch": True, "on_true": ["escape_name", 0], "on_false": ["escape_name", 0]},
    }
    with pytest.raises(AssertionError) as failure:
        server.run(prompt)
    message = str(failure.value)
    assert f"was not found in the '{INPUTS[key][1]}' model folder" in message
    assert f'"node_type": "{INPUTS[key][0]}"' in message
