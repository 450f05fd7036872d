"""Held-out and training accuracy by epoch of run folders, one line pair per folder.

    python docs/results/trivial-augment/curves.py OUT.png LABEL=FOLDER [LABEL=FOLDER ...]

Each FOLDER holds a run's `history.csv` (a run folder or its copy under docs/results). Solid lines are the
held-out accuracy (`val_accuracy`), dashed ones the training accuracy on augmented images (`accuracy`).
"""

import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_history(folder):
    """(epochs, val_accuracy, accuracy) lists from `folder`/history.csv."""
    with open(os.path.join(folder, "history.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"history.csv holds no epochs. Received: folder={folder!r}")
    return ([int(r["epoch"]) for r in rows], [float(r["val_accuracy"]) for r in rows], [float(r["accuracy"]) for r in rows])


def main(out, runs):
    figure, ax = plt.subplots(figsize=(7.0, 4.2))
    for (label, folder), color in zip(runs, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        epochs, val_accuracy, accuracy = read_history(folder)
        ax.plot(epochs, val_accuracy, color=color, label=f"{label}: held-out")
        ax.plot(epochs, accuracy, color=color, linestyle="--", label=f"{label}: training (augmented)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.5, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    partial = out + ".partial.png"
    figure.savefig(partial, dpi=110)
    os.replace(partial, out)
    print(out)


if __name__ == "__main__":
    if len(sys.argv) < 3 or any("=" not in arg for arg in sys.argv[2:]):
        sys.exit(__doc__)
    main(sys.argv[1], [tuple(arg.split("=", 1)) for arg in sys.argv[2:]])
