"""The test command (README, 'Tests'): install what the tests need into this Python, check the code
with ruff (lint and format, as configured in pyproject.toml), then run pytest.

    python scripts/run_tests.py [pytest arguments]

torch is installed only when this Python has none, and then as the pinned CPU build CI uses: an
unpinned torch pulls a CUDA build of several GB, and ComfyUI's environment keeps the torch it has.
The exit status is ruff's when it finds a problem, else pytest's: non-zero when a test fails, 5 when
no test was collected. `ruff format .` and `ruff check --fix .` fix most of what ruff reports.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the CPU wheel CI installs


def pip_install(*arguments):
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *arguments], check=True
    )


def main(argv) -> int:
    if importlib.util.find_spec("torch") is None:
        pip_install(TORCH)
    pip_install("-r", str(ROOT / "tests" / "requirements.txt"))
    for check in (["check", "."], ["format", "--check", "."]):
        status = subprocess.run([sys.executable, "-m", "ruff", *check], cwd=ROOT).returncode
        if status:
            return status
    sys.path.insert(0, str(ROOT / "scripts"))
    from pack import import_pack

    import_pack()
    from style_suite.headless.local import GIVE_MEMORY_BACK  # memory freed between test modules leaves pytest

    return subprocess.run(
        [sys.executable, "-m", "pytest", *argv], cwd=ROOT, env={**GIVE_MEMORY_BACK, **os.environ}
    ).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
