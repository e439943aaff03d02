"""The GPU check (bench/device_check.py) at the test scale on the CPU, so that the one command a
lent GPU runs cannot rot between GPU runs: it completes, checks every shipped workflow and every
component, and passes."""

import os
import subprocess
import sys
from pathlib import Path

from fixtures.shipped_workflows import API_WORKFLOWS

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "device_check.py"
COMPONENTS = [
    "StyleShot style tokens",
    "contour map",
    "lineart map",
    "InST token",
    "Apply Style step",
    "Apply Content step",
    "Batch Align step, 4 rows",
]


def test_the_gpu_check_runs_and_passes_at_the_test_scale(
    comfyui_path, model_root, sd15_checkpoint, sdxl_checkpoint, clip_vision_l
):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--scale", "test", "--models", str(model_root)],
        env={**os.environ, "COMFYUI_PATH": str(comfyui_path), "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    output = result.stdout
    assert result.returncode == 0, output[-4000:] + result.stderr[-4000:]
    assert "test scale: 64 px, 2 steps" in output and "| check | measured | target | result |" in output
    table = [line for line in output.splitlines() if line.startswith("| ")]
    for path in API_WORKFLOWS:
        assert any(f"| workflow {path.stem} |" in line and line.endswith("| pass |") for line in table), path.stem
    for component in COMPONENTS:
        assert any(f"| fp16 {component} |" in line and line.endswith("| pass |") for line in table), component
    for ratio in ("Apply Style / plain", "Apply Content / stock ControlNet", "Batch Align / plain"):
        assert any(f"| step ratio {ratio}" in line for line in table), ratio
    assert ", 0 failed," in output
