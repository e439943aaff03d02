"""python scripts/convert_styleshot.py style_aware_encoder.bin styleshot_contour_ip.bin [--fp16]

Writes slim .safetensors copies beside the inputs (see loaders/convert.py)."""

import sys

from pack import import_pack

if __name__ == "__main__":
    import_pack()
    from style_suite.loaders.convert import main

    sys.exit(main())
