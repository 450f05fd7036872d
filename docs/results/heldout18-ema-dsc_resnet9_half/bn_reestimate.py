"""Held-out accuracy of a `probe.py` run's trained weights (`raw.keras`) and their average
(`final.keras`), with BatchNorm's moving statistics as trained and re-estimated by one pass over the
augmented training batches under each set of weights (BatchNorm's momentum, no weight updates).

    python bn_reestimate.py runs/heldout-ema0.999-e18 > bn-reestimate.json
"""
import json
import os
import sys

import keras
import tensorflow as tf

import sepconv  # noqa: F401
from sepconv.data import Batches, load_cifar10
from sepconv.training import TrainConfig
from sepconv.training import _experiment
from sepconv.training._loop import training_batches
from sepconv import _run_folder

run = sys.argv[1]
config = TrainConfig.from_dict(_run_folder.read_json(os.path.join(run, "config.json"))["config"])
data = load_cifar10(progress=False)
splits = _experiment._splits(config, data, quiet=True)
held_out = Batches(splits.x_val, splits.y_val, batch_size=128, shuffle=False)
train = training_batches(splits, config)
train.epoch = 0
train.on_epoch_end()


def score(model):
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return float(model.evaluate(held_out, verbose=0, return_dict=True)["accuracy"])


scores = {}
for name in ("raw.keras", "final.keras"):
    model = keras.saving.load_model(os.path.join(run, "dsc_resnet9_half", name))
    scores[name] = score(model)
    step = tf.function(lambda x: model(x, training=True))
    for i in range(len(train)):
        x, _ = train[i]
        step(x)
    scores[name + " + BN re-estimated"] = score(model)
print(json.dumps(scores))
