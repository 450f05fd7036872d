"""Train-step img/s of `separable_resnet` variants next to `dsc_resnet9_half`.

    python docs/results/bench-separable-resnet/variants.py --dtype-policy float32 --output float32.json

Registers each variant under a name (`separable_resnet_c56`: `channels=56`) and runs `sepconv bench model`
on them, training steps with SGD; every other argument goes to `sepconv bench model`.
"""

import sys

from sepconv.cli import main
from sepconv.models import register_model, separable_resnet

# name suffix -> builder arguments; the defaults are channels=48, depth=3, kernel_size=5.
VARIANTS = {
    "c56": dict(channels=56),  # the widest under 300k; 56 is not a multiple of 16
    "c64_d2": dict(channels=64, depth=2),  # every channel count a multiple of 32
    "k3": dict(kernel_size=3),
}

if __name__ == "__main__":
    names = [f"separable_resnet_{suffix}" for suffix in VARIANTS]
    for name, arguments in zip(names, VARIANTS.values()):
        register_model(name, separable_resnet, **arguments)
    command = ["bench", "model", "dsc_resnet9_half", "separable_resnet", *names, "--mode", "train"]
    sys.exit(main([*command, "--optimizer", "sgd", *sys.argv[1:]]))
