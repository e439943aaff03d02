"""Pack-wide rules that ComfyUI relies on: relative imports only (ComfyUI puts comfy/ first on
sys.path, so a bare `import utils` would be ComfyUI's), comfy imported only by nodes/ and patches/,
and a plain library with no nodes when imported outside ComfyUI."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACK_DIRS = ("nodes", "loaders", "preprocessors", "models", "patches")
OWN_TOP_LEVEL = set(PACK_DIRS)
COMFY_MODULES = {
    "comfy",
    "folder_paths",
    "nodes",
    "node_helpers",
    "comfy_extras",
    "comfy_api",
    "server",
    "execution",
    "comfyui_version",
}
SOURCES = [ROOT / "__init__.py"] + sorted(p for d in PACK_DIRS for p in (ROOT / d).rglob("*.py"))


def absolute_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pack_modules_import_each_other_relatively_and_comfy_only_where_allowed(path):
    imported = set(absolute_imports(path))
    assert not imported & OWN_TOP_LEVEL, f"{path.name} imports the pack absolutely: {imported & OWN_TOP_LEVEL}"
    if path.parent.name not in ("nodes", "patches"):
        assert not imported & COMFY_MODULES, f"{path.name} imports ComfyUI outside nodes/ and patches/"


def test_outside_comfyui_the_pack_imports_under_a_dashed_name_with_no_nodes():
    # A fresh interpreter: this one may already hold ComfyUI when the host tests ran first.
    code = f"""
import importlib, importlib.util, sys
spec = importlib.util.spec_from_file_location("style-suite-x", {str(ROOT / "__init__.py")!r},
                                              submodule_search_locations=[{str(ROOT)!r}])
pack = importlib.util.module_from_spec(spec)
sys.modules["style-suite-x"] = pack
spec.loader.exec_module(pack)
importlib.import_module("style-suite-x.loaders.annotators")
layouts = importlib.import_module("style-suite-x.loaders.layouts")
print(pack.NODE_CLASS_MAPPINGS, layouts.hed_layout.cache_info().currsize, "comfy" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["{}", "0", "False"]  # no nodes, nothing built, ComfyUI untouched


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("## Tests", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert command == "python scripts/run_tests.py"
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci == [command]


def run_tests_with(monkeypatch, torch_installed=True, statuses=None):
    """scripts/run_tests.py's main with its commands recorded instead of run; `statuses` maps a
    tool ("pytest", "ruff format", ...) to the exit status it returns (0 otherwise)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_tests", ROOT / "scripts" / "run_tests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    commands = []

    def run(command, **kwargs):
        commands.append(command[1:])
        tool = " ".join(command[2:4]) if command[2] == "ruff" else command[2]
        return subprocess.CompletedProcess(command, (statuses or {}).get(tool, 0))

    monkeypatch.setattr(module.subprocess, "run", run)
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: object() if torch_installed else None)
    return module.main(["tests/unit", "-x"]), commands


@pytest.mark.parametrize("torch_installed", [False, True])
def test_the_test_command_installs_what_the_tests_need_then_returns_pytests_status(monkeypatch, torch_installed):
    status, commands = run_tests_with(monkeypatch, torch_installed, {"pytest": 5})
    assert status == 5  # no test collected is a failure, not a pass
    installs = [c for c in commands if c[:3] == ["-m", "pip", "install"]]
    torch = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "torch==2.13.0"]
    assert (torch in installs) != torch_installed
    assert installs[-1][-2:] == ["-r", str(ROOT / "tests" / "requirements.txt")]
    assert commands[-3:] == [
        ["-m", "ruff", "check", "."],
        ["-m", "ruff", "format", "--check", "."],
        ["-m", "pytest", "tests/unit", "-x"],
    ]


@pytest.mark.parametrize("tool", ["ruff check", "ruff format"])
def test_the_test_command_stops_at_a_lint_or_format_problem(monkeypatch, tool):
    status, commands = run_tests_with(monkeypatch, statuses={tool: 1})
    assert status == 1 and not any("pytest" in command for command in commands)
