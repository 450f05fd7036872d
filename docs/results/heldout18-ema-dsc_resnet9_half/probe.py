"""Held-out probe of the weight average: one run of the fast recipe (10 % of the training images held
out), its last trained weights and their average both scored on the held-out split. Since the
average is never trained on, the run trains exactly as one without it would.

    python probe.py runs/heldout-ema0.999-e18 18 0.999 > probe.json   # folder, epochs, momentum
"""
import json
import os
import sys

import keras

import sepconv  # noqa: F401
from sepconv.data import Batches, load_cifar10
from sepconv.training import make_config, train
from sepconv.training import _experiment

folder, epochs, momentum = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
extra = dict(train_size=int(sys.argv[4])) if len(sys.argv) > 4 else {}
remove = os.remove


def keep_last_epoch(path):  # the run deletes each epoch checkpoint; keep the latest as raw.keras
    if os.path.basename(path).startswith("epoch-") and path.endswith(".keras"):
        os.replace(path, os.path.join(os.path.dirname(path), "raw.keras"))
    else:
        remove(path)


config = make_config("fast", validation=0.1, epochs=epochs, dtype_policy="mixed_bfloat16", cutout=8,
                     ema_momentum=momentum, **extra)
data = load_cifar10(progress=False)
os.remove = keep_last_epoch
result = train("dsc_resnet9_half", config, out=folder, quiet=True, data=data, report=False)
os.remove = remove
splits = _experiment._splits(config, data, quiet=True)
held_out = Batches(splits.x_val, splits.y_val, batch_size=128, shuffle=False)
scores = {"epochs": epochs, "ema_momentum": momentum, "val_images": len(splits.y_val)}
for name in ("raw.keras", "final.keras"):
    model = keras.saving.load_model(os.path.join(folder, "dsc_resnet9_half", name))
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    scores[name] = float(model.evaluate(held_out, verbose=0, return_dict=True)["accuracy"])
scores["history_last_val_accuracy"] = result.history["dsc_resnet9_half"][-1]["val_accuracy"]
print(json.dumps(scores))
