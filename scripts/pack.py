"""Import the pack from its folder (whose name may hold dashes) as the package `style_suite`."""

import importlib.util
import sys
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]


def import_pack():
    if "style_suite" in sys.modules:
        return sys.modules["style_suite"]
    spec = importlib.util.spec_from_file_location(
        "style_suite", PACK / "__init__.py", submodule_search_locations=[str(PACK)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["style_suite"] = module
    spec.loader.exec_module(module)
    return module
