"""Held-out and training accuracy by epoch of run folders, one line pair per folder.

    python docs/results/curves.py OUT.png LABEL=FOLDER [LABEL=FOLDER ...]

Each FOLDER holds a run's `history.csv` (a run folder or its copy under docs/results). Solid lines are the
held-out accuracy (`val_accuracy`), dashed ones the training accuracy on augmented images (`accuracy`).
"""

import sys

from sepconv.report import plot_histories, save_figure

if __name__ == "__main__":
    if len(sys.argv) < 3 or any("=" not in arg for arg in sys.argv[2:]):
        sys.exit(__doc__)
    folders = dict(arg.split("=", 1) for arg in sys.argv[2:])
    title = "held-out (solid) and training (dashed, augmented images) accuracy"
    print(save_figure(plot_histories(folders, title=title), sys.argv[1]))
