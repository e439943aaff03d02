"""Batch style transfer: every content image with every style image, spread over servers.

Each server gets its own workers, which post one prompt at a time to that server's queue, so a
server never waits for a download. A job's first image is written last and atomically: a job whose
output exists is finished, and a batch run again after an interruption skips it.
"""

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .client import Comfy, ComfyError, ServerUnreachable

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Job:
    style: Path
    content: Path | None  # None: text-driven
    output: Path


def image_files(paths, what: str) -> list:
    """The images named, or in the folders named (not recursive, sorted)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not inside:
                raise ComfyError(f"the {what} folder {path} holds no image ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise ComfyError(f"{what} image {path} does not exist")
    return found


def output_name(style: Path, content: Path | None) -> str:
    return f"{content.stem}__{style.stem}.png" if content else f"{style.stem}.png"


def plan(styles, contents, out_dir: Path) -> list:
    """One job per (content, style) pair, or per style when there is no content image."""
    jobs = [
        Job(style, content, out_dir / output_name(style, content))
        for content in (contents or [None])
        for style in styles
    ]
    outputs = [job.output for job in jobs]
    clashes = sorted({o.name for o in outputs if outputs.count(o) > 1})
    if clashes:
        raise ComfyError(
            f"several inputs share a file name, so their outputs would clash: {', '.join(clashes)}. "
            "Rename them or run them as separate batches."
        )
    return jobs


def save_images(client: Comfy, images: list, output: Path) -> list:
    """Download a job's images: the first to `output`, more as `<stem>-2.png`, ... The first is
    moved into place last, so its presence means the job is complete."""
    if not images:
        raise ComfyError("the workflow saved no image (does it end in a Save Image node?)")
    output.parent.mkdir(parents=True, exist_ok=True)
    targets = [output] + [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(2, len(images) + 1)]
    for image, target in reversed(list(zip(images, targets))):
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(client.view(image))
        os.replace(partial, target)
    return targets


@dataclass
class Outcome:
    done: list
    failed: list  # (job, server, message)


def run(jobs, servers, build_prompt, per_server=2, say=print) -> Outcome:
    """Run `jobs` on `servers`; `build_prompt(job, client)` gives each job's API prompt (it uploads
    the job's images to that client's server). A server that cannot be reached hands its job back
    and stops taking jobs; jobs left when no server remains are reported as failed."""
    todo = queue.Queue()
    for job in jobs:
        todo.put(job)
    outcome, lock = Outcome([], []), threading.Lock()
    unreachable = {}

    def lost(url, error):
        with lock:
            unreachable[url] = str(error)
            say(f"{url}: {error}; the other servers take its jobs")

    def work(url):
        client = Comfy(url)
        try:
            client.check()
        except ServerUnreachable as error:
            return lost(url, error)
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            started = time.monotonic()
            try:
                save_images(client, client.run(build_prompt(job, client)), job.output)
            except ServerUnreachable as error:
                todo.put(job)
                return lost(url, error)
            except Exception as error:  # ComfyUI's error, or a local one (disk full): the batch goes on
                with lock:
                    message = str(error) if isinstance(error, ComfyError) else f"{type(error).__name__}: {error}"
                    outcome.failed.append((job, url, message))
                    say(f"failed {job.output.name} on {url}")
            else:
                with lock:
                    outcome.done.append(job)
                    say(f"done {job.output.name} ({time.monotonic() - started:.1f} s, {url})")

    workers = [threading.Thread(target=work, args=(url,), daemon=True) for url in servers for _ in range(per_server)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    while not todo.empty():
        reason = "; ".join(f"{url}: {error}" for url, error in unreachable.items())
        outcome.failed.append((todo.get(), None, f"not run: no server could take it ({reason})"))
    return outcome
