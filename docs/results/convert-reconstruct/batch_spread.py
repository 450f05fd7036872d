"""How far one batch's statistics stray from the typical batch's, per separable layer of a converted net.

    KERAS_BACKEND=tensorflow python batch_spread.py IN.keras --out DIR [--seeds 0 3] [--batches 24]

Loads the rank-1 reconstruction `collapse.py` cached in DIR (same `--iterations`,
`--relu-rounds`), and for the first `--batches` training batches of each seed's order (as
`sepconv convert --seed S` draws them) computes the scale a BatchNorm divides every channel by
after each step (depthwise: .0, pointwise: .1) of every separable layer: sqrt(variance + 1e-3),
Keras' epsilon, which keeps channels that are zero on every image finite. Per batch, the median
over channels of that scale divided by the channel's median over all batches: 1 is a typical
batch. Writes DIR/batch-spread.json with the quantiles per step, each seed's first
batch, and the start `finetune(reparameterize=True)` takes from each seed's first 8 batches.
Training images only.
"""

import argparse
import json
import os

import keras
import numpy as np

from sepconv._atomic import write_text
from sepconv.convert import convert
from sepconv.convert._reparameterize import _statistics, reparameterizable
from sepconv.data import Batches, load_cifar10, make_splits

_EPSILON = 1e-3  # keras.layers.BatchNormalization's


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 3])
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--relu-rounds", type=int, default=4)
    args = parser.parse_args()
    model = keras.saving.load_model(args.input)
    student, _ = convert(model, rank=1, calibration=None)
    cache = os.path.join(args.out, f"reconstructed-rank-1-i{args.iterations}-r{args.relu_rounds}.npz")
    student.set_weights(list(np.load(cache).values()))
    layers = [layer for layer in student.layers if reparameterizable(layer)]
    data = load_cifar10(os.environ["SEPCONV_DATA"])
    spreads = {}  # (layer, step) -> per batch, per channel standard deviation
    starts = {}  # (layer, step, seed) -> the start's standard deviation per channel
    for seed in args.seeds:
        splits = make_splits(data, validation="test", seed=seed)
        train = Batches(splits.x_train, splits.y_train, batch_size=128, augment=True, seed=seed)
        batches = [train[i][0] for i in range(args.batches)]
        for images in batches:
            for layer, steps in _statistics(student, layers, images).items():
                for step, (_, variance) in enumerate(steps):
                    spreads.setdefault((layer.name, step), []).append(np.sqrt(variance + _EPSILON))
        for layer, steps in _statistics(student, layers, np.concatenate(batches[:8])).items():
            for step, (_, variance) in enumerate(steps):
                starts[layer.name, step, seed] = np.sqrt(variance + _EPSILON)
    record = {"input": args.input, "config": vars(args), "steps": {}}
    for (name, step), stds in spreads.items():
        stds = np.stack(stds)
        typical = np.median(stds, axis=0)
        ratios = np.median(stds / typical, axis=1)  # per batch, over channels
        row = {f"p{q}": float(np.quantile(ratios, q / 100)) for q in (10, 50, 90)}
        row["max"] = float(ratios.max())
        for index, seed in enumerate(args.seeds):
            row[f"seed {seed} first batch"] = float(ratios[index * args.batches])
            row[f"seed {seed} start (calmest of 8)"] = float(np.median(starts[name, step, seed] / typical))
        record["steps"][f"{name}.{step}"] = row
        print(f"{name}.{step}", json.dumps({key: round(value, 2) for key, value in row.items()}), flush=True)
    write_text(os.path.join(args.out, "batch-spread.json"), json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
