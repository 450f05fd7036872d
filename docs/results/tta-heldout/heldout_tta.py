"""Held-out accuracy of test-time augmentation variants: the mirror, and mirrors of shifted views.

    python heldout_tta.py runs/fast-dsc_resnet10 dsc_resnet10 > heldout.json

The run must have held out `--validation 0.1` with seed 0 (the `fast` recipe's default); its
final model is scored on those 5,000 training images, never on the test set. A view moved by
(rows, cols) shows input pixel (i + rows, j + cols) at (i, j), zero (the mean colour of the
standardized image) outside, as `sepconv.training._loop.tta_views` does.
"""
import json
import sys

import numpy as np
import keras
import sepconv  # noqa: F401
from sepconv.data import Batches, load_cifar10, make_splits
from sepconv.data._batches import crop_flip, _PAD

run, name = sys.argv[1], sys.argv[2]
model = keras.saving.load_model(f"{run}/{name}/final.keras")
splits = make_splits(load_cifar10(progress=False), validation=0.1, seed=0)
x, y = splits.x_val, splits.y_val
standardized = Batches(x, y, batch_size=len(x), shuffle=False)[0][0]  # NHWC, all images in one batch

def view(dr, dc, flip):
    n = len(standardized)
    return crop_flip(standardized, np.full(n, _PAD + dr), np.full(n, _PAD + dc), np.full(n, flip))

cache = {}
def probs(dr, dc, flip):
    key = (dr, dc, flip)
    if key not in cache:
        cache[key] = model.predict(view(dr, dc, flip), batch_size=500, verbose=0)
    return cache[key]

def acc(views):
    p = sum(probs(*v) for v in views)
    return float((p.argmax(1) == y).mean())

out = {"plain": acc([(0, 0, False)]), "flip": acc([(0, 0, False), (0, 0, True)])}
for s in (1, 2):
    axis = [(0, 0), (s, 0), (-s, 0), (0, s), (0, -s)]
    diag = [(0, 0), (s, s), (-s, -s), (s, -s), (-s, s)]
    out[f"flip+axis{s}"] = acc([(r, c, f) for r, c in axis for f in (False, True)])
    out[f"flip+diag{s}"] = acc([(r, c, f) for r, c in diag for f in (False, True)])
print(json.dumps(out, indent=1))
