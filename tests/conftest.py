"""Import the pack under a package name of its own (as ComfyUI does under its folder name), with the
scripts' own importer (scripts/pack.py), and put tests/ on sys.path for the fixtures."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

_spec = importlib.util.spec_from_file_location("style_suite_pack_importer", ROOT / "scripts" / "pack.py")
_importer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_importer)
_importer.import_pack()
