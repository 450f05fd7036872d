"""Every TrivialAugment operation of `sepconv.data` on one CIFAR-10 training image, at seven magnitudes.

    python docs/results/trivial-augment/grid.py [OUT.png]

Reads $SEPCONV_DATA (or keras.datasets); writes grid.png next to this script by default.
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sepconv.data import load_cifar10  # noqa: E402
from sepconv.data import _trivial_augment as ta  # noqa: E402

LEVELS = (-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0)
UNSIGNED = {"solarize": (0.0, 1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0), "posterize": (0.0, 1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0)}


def augmented(image, name, level):
    """`image` through operation `name` at `level` (in [-1, 1]; [0, 1] for solarize and posterize)."""
    height, width = image.shape[:2]
    affine = ta._affine(name, level, height, width) if name in ta._GEOMETRIC else (1, 0, 0, 0, 1, 0)
    param = {"solarize": 255.0 * (1 - level), "posterize": 2 ** round(level * 6)}.get(name, round((1 + 0.99 * level) * 256) / 256)
    maps = ta._pixel_maps(np.array([affine], float), height, width)
    return ta.apply_numpy(image[None], np.array([ta.OPS.index(name)]), np.array([param], np.float32), maps)[0]


def main(out):
    data = load_cifar10(progress=False)
    image = data.x_train[7]
    names = [name for name in ta.OPS if name != "identity"]
    figure, axes = plt.subplots(len(names), len(LEVELS), figsize=(len(LEVELS) * 1.1, len(names) * 1.1))
    for row, name in enumerate(names):
        for col, level in enumerate(UNSIGNED.get(name, LEVELS)):
            axes[row, col].imshow(augmented(image, name, level), interpolation="nearest")
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    for col, level in enumerate(LEVELS):
        axes[0, col].set_title(f"{level:+.2f}", fontsize=8)
    figure.suptitle("TrivialAugment in sepconv: level -1..1 (solarize, posterize: 0..1)", fontsize=9)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "grid.png"))
