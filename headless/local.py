"""Start a ComfyUI from its folder for one command, and stop it afterwards."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .client import ComfyError

# glibc raises its mmap threshold after each large free, so later weights land in a heap it keeps when
# they are freed: a server's RSS then stays gigabytes high after /free (ComfyUI's own graphs too). A
# fixed threshold keeps large tensors in their own mappings, which free returns. README, "Memory".
GIVE_MEMORY_BACK = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalComfyUI:
    """`python main.py` of the ComfyUI at `comfyui` on a free loopback port, as a context manager.

    `python` is the interpreter with ComfyUI's requirements (default: this one); `extra_args` go to
    main.py as they are (for example --cpu). Its log goes to `log_path` (by default a temporary
    file, removed when it stops); its last lines are in the error when it fails to start.
    """

    def __init__(self, comfyui, python=None, extra_args=(), log_path=None, timeout=300):
        self.comfyui = Path(comfyui)
        if not (self.comfyui / "main.py").is_file():
            raise ComfyError(f"{self.comfyui} has no main.py: COMFYUI_PATH must be the folder of a ComfyUI checkout")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._own_log = log_path is None  # a temporary log is removed when the server stops
        if self._own_log:
            fd, log_path = tempfile.mkstemp(prefix="comfyui-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        command = [
            python or sys.executable,
            "main.py",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            *extra_args,
        ]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            command,
            cwd=self.comfyui,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**GIVE_MEMORY_BACK, **os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ComfyError(
                    f"ComfyUI at {self.comfyui} exited with code {self.process.returncode} while "
                    f"starting; the end of its log ({self.log_path}):\n{self.log()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=5) as response:
                    json.load(response)
                return
            except (urllib.error.URLError, ConnectionError, socket.timeout, ValueError):
                time.sleep(0.5)
        raise ComfyError(f"ComfyUI at {self.comfyui} did not answer within {timeout} s; its log: {self.log_path}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
