"""Train-step img/s of `dsc_resnet9` at widths whose channel counts are multiples of 32, 16 and 8.

    python docs/results/bench-channels/channels.py --dtype-policy mixed_bfloat16 --output bf16.json

Registers each width under a name (`dsc_resnet9_w0.5625`: stem 36, stages 72-144-288) and runs
`sepconv bench model` on them; every other argument goes to `sepconv bench model`.
"""

import sys

from sepconv.cli import main
from sepconv.models import dsc_resnet9, register_model

# width: the largest power of two dividing every channel count (stem excluded)
WIDTHS = {0.5: 32, 0.5625: 8, 0.625: 16, 0.75: 32}

if __name__ == "__main__":
    names = []
    for width in WIDTHS:
        names.append(f"dsc_resnet9_w{width}")
        register_model(names[-1], dsc_resnet9, width=width)
    sys.exit(main(["bench", "model", *names, "--mode", "train", *sys.argv[1:]]))
