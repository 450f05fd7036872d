"""The distillation step size chosen on held-out training images, not on the test set.

    KERAS_BACKEND=tensorflow python select_lr.py IN.keras --rank 2 --out DIR [--learning-rates 1e-4 3e-4 1e-3] \
        [--schedule constant|cosine] [--temperatures 4]

Converts IN at `--rank` with reconstruction (1,024 calibration training images, the
defaults of `convert`), then, from those same weights for each step size, distills one
epoch (Adam, its step constant or decayed to 0 on a cosine, temperature 4, no labels,
crop+flip) over the 45,000 training images left after holding out 5,000 (stratified,
seed 0), and measures the student's accuracy on the held-out 5,000. The test set is
not read. `--temperatures` adds the distillation temperature to the grid. Writes
DIR/select-rank-R.json (-cosine with the cosine, -T2-8 for temperatures 2 and 8) and
prints the step size (and temperature) with the best held-out accuracy.
"""

import argparse
import itertools
import json
import os
import time

import keras

from sepconv import _provenance
from sepconv._atomic import write_text
from sepconv.convert import cifar10_calibration, convert, finetune
from sepconv.convert._finetune import SCHEDULES, cifar10_image_format
from sepconv.data import Batches, load_cifar10, make_splits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--schedule", choices=SCHEDULES, default="constant")
    parser.add_argument("--temperatures", nargs="+", type=float, default=[4.0])
    args = parser.parse_args()
    source = os.environ["SEPCONV_DATA"]
    os.makedirs(args.out, exist_ok=True)
    model = keras.saving.load_model(args.input)
    data_format = cifar10_image_format(model)
    splits = make_splits(load_cifar10(source), validation=5000, seed=0)
    train = Batches(splits.x_train, splits.y_train, batch_size=128, augment=True, seed=0, data_format=data_format)
    held_out = Batches(splits.x_val, splits.y_val, batch_size=256, shuffle=False, data_format=data_format)
    calibration = cifar10_calibration(source, 1024, model)
    start = time.perf_counter()
    student, report = convert(model, rank=args.rank, calibration=calibration, reconstruct=True)
    reconstructed = student.get_weights()
    record = {"input": args.input, "rank": args.rank, "schedule": args.schedule,
              "reconstruction_seconds": time.perf_counter() - start, "train_images": len(splits.y_train),
              "held_out": splits.validation, "runs": [],
              "environment": _provenance.environment(), "reconstruction": report.reconstruction}  # fmt: skip
    for learning_rate, temperature in itertools.product(args.learning_rates, args.temperatures):
        student.set_weights(reconstructed)
        start = time.perf_counter()
        history = finetune(student, train, held_out, epochs=1, learning_rate=learning_rate, teacher=model, verbose=0,
                           schedule=args.schedule, temperature=temperature)  # fmt: skip
        run = {"learning_rate": learning_rate, "temperature": temperature,
               "held_out_accuracy": float(history["val_accuracy"][-1]), "seconds": time.perf_counter() - start}
        record["runs"].append(run)
        accuracy = run["held_out_accuracy"]
        print(f"rank {args.rank} lr {learning_rate:g} {args.schedule} T {temperature:g}: held-out accuracy "
              f"{accuracy:.4f}", flush=True)  # fmt: skip
    best = max(record["runs"], key=lambda r: r["held_out_accuracy"])
    record["chosen"], record["chosen_temperature"] = best["learning_rate"], best["temperature"]
    suffix = "" if args.schedule == "constant" else f"-{args.schedule}"
    if args.temperatures != [4.0]:
        suffix += "-T" + "-".join(f"{t:g}" for t in args.temperatures)
    write_text(os.path.join(args.out, f"select-rank-{args.rank}{suffix}.json"), json.dumps(record, indent=2) + "\n")
    print(f"chosen: {record['chosen']:g}, temperature {record['chosen_temperature']:g}")


if __name__ == "__main__":
    main()
