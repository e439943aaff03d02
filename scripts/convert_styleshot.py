"""python scripts/convert_styleshot.py style_aware_encoder.bin styleshot_contour_ip.bin [--fp16]

Writes slim .safetensors copies beside the inputs (see loaders/convert.py)."""

import importlib.util
import sys
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]


def _pack():
    """Import the pack from its folder (whose name may hold dashes) as `style_suite`."""
    spec = importlib.util.spec_from_file_location("style_suite", PACK / "__init__.py",
                                                  submodule_search_locations=[str(PACK)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["style_suite"] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    _pack()
    from style_suite.loaders.convert import main

    sys.exit(main())
