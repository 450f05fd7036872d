"""Held-out probe of the weight average: one run of the fast recipe (10 % of the training images held
out), its last trained weights and their average both scored on the held-out split. Since the
average is never trained on, the run trains exactly as one without it would.

    python probe.py runs/heldout-ema0.999-e18 --epochs 18 --ema-momentum 0.999 > probe.json
    python probe.py runs/heldout-ema0.999-wall60 --time-budget 60 --ema-momentum 0.999 > probe.json
"""
import argparse
import json
import os

import keras

import sepconv  # noqa: F401
from sepconv.data import Batches, load_cifar10
from sepconv.training import make_config, train
from sepconv.training import _experiment

parser = argparse.ArgumentParser(description="Held-out accuracy of a run's trained weights and their average.")
parser.add_argument("folder", help="run folder to create")
length = parser.add_mutually_exclusive_group(required=True)
length.add_argument("--epochs", type=int, help="a fixed number of epochs")
length.add_argument("--time-budget", type=float, help="minutes of wall clock (sepconv's --time-budget)")
parser.add_argument("--ema-momentum", type=float, required=True)
parser.add_argument("--train-size", type=int, help="a subset of the training images (a quick check)")
args = parser.parse_args()
folder = args.folder
extra = {key: value for key, value in [("epochs", args.epochs), ("time_budget", args.time_budget),
                                        ("train_size", args.train_size)] if value is not None}
remove = os.remove


def keep_last_epoch(path):  # the run deletes each epoch checkpoint; keep the latest as raw.keras
    if os.path.basename(path).startswith("epoch-") and path.endswith(".keras"):
        os.replace(path, os.path.join(os.path.dirname(path), "raw.keras"))
    else:
        remove(path)


config = make_config("fast", validation=0.1, dtype_policy="mixed_bfloat16", cutout=8,
                     ema_momentum=args.ema_momentum, **extra)
data = load_cifar10(progress=False)
os.remove = keep_last_epoch
result = train("dsc_resnet9_half", config, out=folder, quiet=True, data=data, report=False)
os.remove = remove
splits = _experiment._splits(config, data, quiet=True)
held_out = Batches(splits.x_val, splits.y_val, batch_size=128, shuffle=False)
history = result.history["dsc_resnet9_half"]
scores = {"epochs": len(history), "ema_momentum": args.ema_momentum, "val_images": len(splits.y_val)}
for name in ("raw.keras", "final.keras"):
    model = keras.saving.load_model(os.path.join(folder, "dsc_resnet9_half", name))
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    scores[name] = float(model.evaluate(held_out, verbose=0, return_dict=True)["accuracy"])
scores["history_last_val_accuracy"] = history[-1]["val_accuracy"]
print(json.dumps(scores))
