"""Talk to one ComfyUI server over its HTTP API and progress WebSocket (docs/design/comfyui.md section 6).

Every failure becomes a ComfyError whose message is what a user needs: ComfyUI's own validation or
execution text, naming the node by its title, or why the server could not be reached.
"""

import hashlib
import json
import mimetypes
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from .websocket import WebSocket

DETAILS_LIMIT = 600  # a "value not in list" detail lists every file in a folder


class ComfyError(Exception):
    """A workflow that failed, in ComfyUI's words."""


class ServerUnreachable(ComfyError):
    """The server is not there (or stopped answering): another server may still run the job."""


class Comfy:
    def __init__(self, url: str, timeout: float = 60):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    # HTTP -----------------------------------------------------------------------------------------
    def _request(self, route, body=None, headers=None):
        request = urllib.request.Request(self.url + route, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError:  # the server answered: callers read its error (a URLError too)
            raise
        except (urllib.error.URLError, ConnectionError, socket.timeout) as error:
            raise self._unreachable(getattr(error, "reason", error)) from None

    def _unreachable(self, reason):
        return ServerUnreachable(
            f"could not reach ComfyUI at {self.url} ({reason}). Is it running? Start it, pass its address "
            "with --server, or set COMFYUI_PATH to let this command start one."
        )

    def get(self, route):
        return json.loads(self._request(route))

    def post(self, route, payload):
        return self._request(route, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def check(self):
        """Fail early, and clearly, when the server is not there."""
        self.get("/system_stats")

    # Inputs and outputs ---------------------------------------------------------------------------
    def upload_image(self, path: Path) -> str:
        """Put a local image in the server's input folder; returns the name LoadImage takes. The
        name carries a hash of the content, so different files never overwrite each other."""
        data = path.read_bytes()
        name = f"{path.stem}-{hashlib.sha256(data).hexdigest()[:12]}{path.suffix.lower()}"
        boundary = uuid.uuid4().hex
        fields = {"type": "input", "subfolder": "style_suite", "overwrite": "true"}
        body = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
            for key, value in fields.items()
        )
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                f"Content-Type: {mime}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        try:
            answer = json.loads(
                self._request("/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
            )
        except urllib.error.HTTPError as error:
            raise ComfyError(f"ComfyUI refused the upload of {path} ({error.code}: {error.read().decode()[:200]})")
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def view(self, image: dict) -> bytes:
        query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
        return self._request(f"/view?{query}")

    # Running --------------------------------------------------------------------------------------
    def run(self, prompt: dict, on_message=None, timeout=None) -> list:
        """Queue an API-format prompt, follow it to the end and return its saved images (what
        /history lists with type "output"), as {"filename", "subfolder", "type"} dicts.

        Progress comes over the WebSocket, opened before the prompt is queued so that no message
        is missed; `on_message(type, data)` sees each one that belongs to this prompt.
        """
        ws_url = "ws" + self.url[len("http") :] + f"/ws?clientId={self.client_id}"
        try:
            socket_ = WebSocket(ws_url, timeout=self.timeout)
        except OSError as error:
            raise self._unreachable(error) from None
        with socket_:
            prompt_id = self.queue(prompt)
            try:
                self._follow(socket_, prompt, prompt_id, on_message, timeout)
            except KeyboardInterrupt:
                self.cancel(prompt_id)
                raise
        return self.saved_images(prompt, prompt_id)

    def queue(self, prompt: dict) -> str:
        try:
            answer = json.loads(self.post("/prompt", {"prompt": prompt, "client_id": self.client_id}))
        except urllib.error.HTTPError as error:
            raise ComfyError(validation_message(_json_or_text(error.read()), prompt)) from None
        return answer["prompt_id"]

    def _follow(self, ws, prompt, prompt_id, on_message, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None:
                ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = ws.receive()
            except socket.timeout:
                raise ComfyError(f"the prompt did not finish within {timeout} s; it is still on the server's queue")
            except OSError:
                message = None
            if message is None:
                raise ServerUnreachable(
                    f"ComfyUI at {self.url} closed the connection while running the prompt (did the server stop?)"
                )
            if isinstance(message, bytes):  # previews
                continue
            event = json.loads(message)
            event_type, data = event.get("type"), event.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if on_message:
                on_message(event_type, data)
            if event_type == "execution_error":
                raise ComfyError(execution_message(data, prompt))
            if event_type == "execution_interrupted":
                raise ComfyError("the prompt was interrupted on the server")
            if event_type == "executing" and data.get("node") is None:  # sent after the history is written
                return

    def saved_images(self, prompt, prompt_id) -> list:
        entry = self.get(f"/history/{prompt_id}").get(prompt_id)
        if entry is None:
            raise ComfyError(f"ComfyUI has no record of prompt {prompt_id} (was its history cleared?)")
        status = entry.get("status", {})
        if status.get("status_str") == "error":
            errors = [data for event_type, data in status.get("messages", []) if event_type == "execution_error"]
            if errors:
                raise ComfyError(execution_message(errors[0], prompt))
            raise ComfyError(
                f"ComfyUI marked prompt {prompt_id} as failed without an error message "
                f"({', '.join(event_type for event_type, _ in status.get('messages', [])) or 'no events'}): "
                "the server's console says why"
            )
        return [
            image
            for output in entry.get("outputs", {}).values()
            for image in output.get("images", [])
            if image.get("type") == "output"
        ]

    def cancel(self, prompt_id):
        """Take the prompt off the queue, or stop it if it is running (Ctrl-C)."""
        try:
            self.post("/queue", {"delete": [prompt_id]})
            self.post("/interrupt", {"prompt_id": prompt_id})
        except (ComfyError, urllib.error.HTTPError):
            pass


def _json_or_text(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return {"error": {"message": body.decode(errors="replace")[:DETAILS_LIMIT]}}


def node_name(prompt: dict, node_id) -> str:
    node = prompt.get(str(node_id), {})
    title = node.get("_meta", {}).get("title")
    class_type = node.get("class_type", "?")
    return f"node {node_id} '{title}' ({class_type})" if title else f"node {node_id} ({class_type})"


def _shorten(text: str) -> str:
    return text if len(text) <= DETAILS_LIMIT else text[:DETAILS_LIMIT] + " ..."


def validation_message(answer: dict, prompt: dict) -> str:
    """ComfyUI's 400 answer to /prompt, one line per problem, nodes named by their titles."""
    error = answer.get("error") or {}
    if isinstance(error, str):
        error = {"message": error}
    lines = [
        f"ComfyUI refused the workflow: {error.get('message', 'invalid prompt')}"
        + (f": {_shorten(error['details'])}" if error.get("details") else "")
    ]
    for node_id, problem in (answer.get("node_errors") or {}).items():
        for item in problem.get("errors", []):
            text = item.get("message", "")
            if item.get("details"):
                text += f": {_shorten(item['details'])}"
            lines.append(f"  {node_name(prompt, node_id)}: {text}")
    return "\n".join(lines)


def execution_message(data: dict, prompt: dict) -> str:
    """ComfyUI's execution_error message: which node failed and its exception's own text."""
    error_type = str(data.get("exception_type", "Error")).rsplit(".", 1)[-1]  # ComfyUI sends module.Class
    message = str(data.get("exception_message", "")).strip()
    return f"{node_name(prompt, data.get('node_id'))} failed: {error_type}: {message}"
