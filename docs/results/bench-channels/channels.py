"""Train-step img/s of `dsc_resnet9` at widths whose channel counts are multiples of 32, 16 and 8.

    python docs/results/bench-channels/channels.py --dtype-policy mixed_bfloat16 --output bf16.json

Registers each width under a name (`dsc_resnet9_w0.5625`: stem 36, stages 72-144-288) and runs
`sepconv bench model` on them; every other argument goes to `sepconv bench model`.
"""

import sys

from sepconv.cli import main
from sepconv.models import dsc_resnet9, register_model

# Every channel count after the stem a multiple of 32, 8, 16 and 32.
WIDTHS = (0.5, 0.5625, 0.625, 0.75)

if __name__ == "__main__":
    names = [f"dsc_resnet9_w{width}" for width in WIDTHS]
    for name, width in zip(names, WIDTHS):
        register_model(name, dsc_resnet9, width=width)
    sys.exit(main(["bench", "model", *names, "--mode", "train", *sys.argv[1:]]))
