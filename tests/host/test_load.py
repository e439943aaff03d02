"""Load: 50 consecutive headless prompts on one ComfyUI server, every shipped API workflow at least
twice, with different seeds, strengths, prompts and uploaded images each time. Every prompt succeeds
and saves its images, and the server's resident memory after the 50th prompt is within 10% of what
it was after the 5th."""

import time

from PIL import Image

from fixtures import images
from fixtures.memory import status_mib
from fixtures.shipped_workflows import API_DIR, assert_saved_pngs, at_test_scale, load
from style_suite.headless.client import Comfy
from style_suite.headless.workflow import configure

# The first five prompts load every model any workflow uses (StyleShot encoder, both adapters and
# annotators, CLIP vision and InST, SDXL, SD1.5); the last runs the fifth's workflow again, so both
# readings are taken with the same models held by ComfyUI's output cache (it keeps only what the
# last prompt used; what it drops, glibc partly keeps as free heap, the same after both). Between
# them every sampling workflow runs again, among preview prompts (a sampling prompt takes 10 to 20 s
# on two CPU cores, a preview under 1 s).
FIRST = [
    "styleshot_image_driven_contour",
    "styleshot_image_driven_lineart",
    "inst_style_transfer",
    "stylealigned_batch_sdxl",
    "styleshot_text_driven",
]
AGAIN = [
    "stylealigned_reference_sd15",
    "stylealigned_batch_sd15",
    "styleshot_image_driven_contour",
    "styleshot_image_driven_lineart",
    "inst_style_transfer",
    "stylealigned_reference_sd15",
    "stylealigned_batch_sd15",
    "stylealigned_batch_sdxl",
]
PREVIEWS = ["contour_preview", "lineart_preview"]
SEQUENCE = FIRST + sum(([name, *PREVIEWS * 2] for name in AGAIN), []) + PREVIEWS * 2 + FIRST[-1:]
PROMPTS, MEASURED = len(SEQUENCE), 5
SUBJECTS = [
    "a house by a lake",
    "a cat on a wall",
    "a lighthouse",
    "a street at night",
    "an old oak tree",
    "a bowl of fruit",
    "a mountain road",
]
SIZES = [(72, 104), (64, 64), (96, 72), (80, 120), (64, 96), (112, 64), (88, 88)]  # (height, width)
SETTLE_S = 3  # ComfyUI collects garbage just after a prompt's history is written


def photo_file(folder, name, size, seed):
    path = folder / f"{name}.png"
    Image.fromarray(images.photo(*size, seed)).save(path)
    return str(path)


def settings(i, folder):
    """What prompt i sets, by node title and input. Every value changes from one prompt to the next,
    so ComfyUI's output cache never answers for the nodes that do the work."""
    subject = SUBJECTS[i % len(SUBJECTS)]  # and 2 or 3 of them for StyleAligned's Prompts
    return {
        ("Sampler", "seed"): i,
        ("Sampler", "noise_seed"): i,
        ("StyleShot Encode Style", "seed"): i,
        ("StyleShot Apply Style", "strength"): 0.5 + 0.1 * (i % 6),
        ("StyleShot Apply Content", "strength"): 1.0 - 0.1 * (i % 5),
        ("Contour", "threshold"): 180 + 5 * (i % 7),
        ("Lineart", "invert"): i % 2 == 1,
        ("InST Style Token", "preprocessing"): ["official", "corrected"][i % 2],
        ("InST Stochastic Inversion", "strength"): 0.5 + 0.05 * (i % 7),
        ("InST Stochastic Inversion", "seed"): i,
        ("InST Latent AdaIN", "strength"): 1.0 - 0.1 * (i % 4),
        ("StyleAligned Batch Align", "shared_score_shift"): 0.1 * (i % 8),
        ("Prompt", "text"): f"{subject} in the style of *",  # InST's placeholder; plain text to CLIP Text Encode
        ("Reference prompt", "text"): f"{subject}, medieval painting",
        ("Prompts", "prompts"): "\n".join(f"{s}, watercolor" for s in (SUBJECTS * 2)[i % 7 : i % 7 + 2 + i % 2]),
        # written only for workflows that load them
        ("Style image", "image"): lambda: photo_file(folder, f"style_{i}", SIZES[i % len(SIZES)], 1000 + i),
        ("Content image", "image"): lambda: photo_file(folder, f"content_{i}", SIZES[(i + 3) % len(SIZES)], i),
    }


def varied(prompt, i, folder, upload):
    """The workflow at test scale with each of `settings` that it has applied; images are written
    and uploaded through the headless client."""
    prompt = at_test_scale(prompt)
    nodes = {node.get("_meta", {}).get("title"): node for node in prompt.values()}
    chosen = []
    for (title, name), value in settings(i, folder).items():
        if title in nodes and not isinstance(nodes[title]["inputs"].get(name, []), list):
            chosen.append((title, name, value() if callable(value) else value))
    return configure(prompt, chosen, upload)


def test_fifty_varied_prompts_all_succeed_and_memory_stays_flat(server, tmp_path):
    client = Comfy(server.url)
    assert PROMPTS == 50 and all(SEQUENCE.count(name) >= 2 for name in SEQUENCE)
    workflows = {name: load(API_DIR / f"{name}.json") for name in SEQUENCE}
    assert {path.stem for path in API_DIR.glob("*.json")} == set(workflows)  # a new workflow joins the load
    resident, started = {}, time.monotonic()
    for i, name in enumerate(SEQUENCE):
        prompt = varied(workflows[name], i, tmp_path, client.upload_image)
        began = time.monotonic()
        entry = server.run(prompt)
        took = time.monotonic() - began
        assert_saved_pngs(server, prompt, entry)
        if i + 1 in (MEASURED, PROMPTS):
            time.sleep(SETTLE_S)
        resident[i + 1] = status_mib("VmRSS", server.process.pid)
        print(f"prompt {i + 1:2d} {name:32s} {took:5.1f} s  server VmRSS {resident[i + 1]:7.0f} MiB")
    fifth, last = resident[MEASURED], resident[PROMPTS]
    print(
        f"{PROMPTS} prompts in {time.monotonic() - started:.0f} s; server VmRSS after prompt {MEASURED}: "
        f"{fifth:.0f} MiB, after prompt {PROMPTS}: {last:.0f} MiB, ratio {last / fifth:.3f}"
    )
    assert abs(last - fifth) <= 0.1 * fifth
