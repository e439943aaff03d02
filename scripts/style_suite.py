"""python scripts/style_suite.py {run,stylize,batch,models} ...  (README, "Headless and batch use")

Needs only Python 3.10+ for run, stylize and batch; `models` checks files with the pack's loaders,
so run it with ComfyUI's Python."""

import sys

from pack import import_pack

if __name__ == "__main__":
    import_pack()
    from style_suite.headless.cli import main

    sys.exit(main())
