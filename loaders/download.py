"""Download a model file from where it is published: resumable, checked, atomic; stdlib only.

The bytes go to `<folder>/<name>.part`, which a later call resumes with an HTTP Range request.
The file takes its final name (os.replace) only once its size, its sha256 (where published) and
its content (model_status.check_file) are right; a file that fails them is deleted.
"""

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from .model_status import CHUNK, check_file, hash_file, size_problem
from .weights import ModelFileError

HUB = "https://huggingface.co"
TIMEOUT = 60  # seconds without data before the transfer counts as failed
USER_AGENT = "style-suite"


class DownloadError(OSError):
    """The transfer failed; the message says whether a partial file was kept to resume from."""


def hub_url(model_file, endpoint=None) -> str:
    """model_file.url, from `endpoint` or $HF_ENDPOINT (a Hugging Face mirror) when one is set."""
    endpoint = endpoint or os.environ.get("HF_ENDPOINT")
    if endpoint and model_file.url.startswith(HUB + "/"):
        return endpoint.rstrip("/") + model_file.url[len(HUB) :]
    return model_file.url


def download(model_file, folder, endpoint=None, progress=None) -> Path:
    """Download `model_file` into `folder` (created if needed) under model_file.name; returns its path.

    `progress(done, total)` is called as bytes arrive (total is None when the server does not say).
    Raises ModelFileError when what arrived is not the published file (nothing is kept) and
    DownloadError when the transfer fails (the partial file is kept; calling again resumes it).
    """
    folder = Path(folder)
    if not model_file.direct_download:
        raise ModelFileError(
            f"{model_file.name} has no direct download: {model_file.url} is a page to choose a "
            f"file from by hand; put the one you choose in {folder}"
        )
    url = hub_url(model_file, endpoint)
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{model_file.name}.part"
    try:
        hasher = _transfer(url, part, model_file, progress)
    except (OSError, http.client.HTTPException) as error:  # urllib's URLError and HTTPError are OSErrors
        kept = (
            f"the partial file {part} ({part.stat().st_size:,} bytes) is kept: run again to resume"
            if part.exists()
            else "nothing was kept: run again"
        )
        raise DownloadError(f"Downloading {model_file.name} from {url} failed ({error}); {kept}.") from error
    _verify(model_file, part, hasher, url)
    final = folder / model_file.name
    os.replace(part, final)
    return final


def _transfer(url, part, model_file, progress):
    """Bring `part` to the whole file; returns a sha256 of all its bytes when the published one is known."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    try:  # urllib follows the hub's redirect to its CDN and keeps the Range header
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        error.close()
        if _content_range(error.headers)[1] == offset:  # asked for bytes past the end: the part is whole
            return hash_file(part) if model_file.sha256 else None
        part.unlink()  # longer than the file: not a part of it
        return _transfer(url, part, model_file, progress)
    with response:
        if response.status == 206:
            start, total = _content_range(response.headers)
            if start != offset:
                part.unlink()
                raise ConnectionError(f"the server resumed from byte {start} instead of {offset}")
        else:  # 200: the server ignored the Range header and sends the whole file
            offset, length = 0, response.headers.get("Content-Length")
            total = int(length) if length else None
        _refuse_other_size(model_file, total, response, part, url)
        hasher = (hash_file(part) if offset else hashlib.sha256()) if model_file.sha256 else None
        done = offset
        with open(part, "ab" if offset else "wb") as file:
            while chunk := response.read(CHUNK):
                file.write(chunk)
                if hasher:
                    hasher.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total is not None and done != total:  # http.client returns b"" when a connection closes early
        raise ConnectionError(f"the connection closed after {done:,} of {total:,} bytes")
    return hasher


def _content_range(headers):
    """(first byte, total size) from 'bytes 100-199/1000' or 'bytes */1000'; None where absent."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", headers.get("Content-Range", "").strip())
    if not match:
        return None, None
    return (int(match[1]) if match[1] else None), (int(match[2]) if match[2] != "*" else None)


def _refuse_other_size(model_file, total, response, part, url):
    """Stop before the transfer when the server announces another size (an error page, another file)."""
    expected = size_problem(model_file, total) if total is not None else ""
    if expected:
        part.unlink(missing_ok=True)
        page = " a web page (text/html), not the file:" if response.headers.get_content_type() == "text/html" else ""
        raise ModelFileError(
            f"{url} answered with{page} {total:,} bytes, but {model_file.name} is {expected}. "
            "Nothing was kept: check the address (or HF_ENDPOINT) and run again."
        )


def _verify(model_file, part, hasher, url):
    """Delete `part` and raise ModelFileError unless it is the published file."""
    size = part.stat().st_size
    expected = size_problem(model_file, size)
    problem = f"it is {size:,} bytes, the published file is {expected}" if expected else ""
    if not problem and hasher and hasher.hexdigest() != model_file.sha256:
        problem = f"its sha256 is {hasher.hexdigest()}, the published file's is {model_file.sha256}"
    if not problem:
        try:
            check_file(model_file, part)
        except ModelFileError as error:
            problem = str(error)
    if problem:
        part.unlink()
        raise ModelFileError(
            f"The download of {model_file.name} from {url} is not the published file: {problem}. "
            "It was deleted; check the address (or HF_ENDPOINT) and run again."
        )
