"""The distillation step size chosen on held-out training images, not on the test set.

    KERAS_BACKEND=tensorflow python select_lr.py IN.keras --rank 2 --out DIR [--learning-rates 1e-4 3e-4 1e-3] \
        [--schedule constant|cosine] [--temperatures 4] [--label-weights 0] [--batch-sizes 128] \
        [--warmups 0] [--feature-weights 0] [--mixups 0] [--iterations 4] [--relu-rounds 2]

Converts IN at `--rank` with reconstruction (1,024 calibration training images,
`--iterations` and `--relu-rounds` as `sepconv convert` takes them), then, from those
same weights for each step size, distills one epoch (Adam, its step constant or decayed
to 0 on a cosine, temperature 4, no labels, crop+flip) over the 45,000 training images
left after holding out 5,000 (stratified, seed 0), and measures the student's accuracy
on the held-out 5,000. The test set is not read. `--temperatures`, `--label-weights`
(the labels' share of the loss), `--batch-sizes`, `--warmups` (`finetune`'s `warmup`),
`--feature-weights` (its `feature_weight`) and `--mixups` (its `mixup`) add those to the
grid. Every setting trains on the same order and augmentation (the README's selections
up to the mixup grid trained each setting on a later epoch's). Writes
DIR/select-rank-R.json (-cosine with the cosine, -T2-8 for temperatures 2 and 8, -L0-0.3
for label weights 0 and 0.3, -b128-64 for batch sizes 128 and 64, -w0.1 for warmup 0.1,
-F1-3 for feature weights 1 and 3, -M0.2-1 for mixup 0.2 and 1) and prints the setting
with the best held-out accuracy. Other `--iterations` or `--relu-rounds` than the
defaults add -i8 or -r4 to the name.
"""

import argparse
import itertools
import json
import os
import time

import keras
from measure import rounds_suffix

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
    parser.add_argument("--label-weights", nargs="+", type=float, default=[0.0])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    parser.add_argument("--warmups", nargs="+", type=float, default=[0.0])
    parser.add_argument("--feature-weights", nargs="+", type=float, default=[0.0])
    parser.add_argument("--mixups", nargs="+", type=float, default=[0.0])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--relu-rounds", type=int, default=2)
    args = parser.parse_args()
    source = os.environ["SEPCONV_DATA"]
    os.makedirs(args.out, exist_ok=True)
    model = keras.saving.load_model(args.input)
    data_format = cifar10_image_format(model)
    splits = make_splits(load_cifar10(source), validation=5000, seed=0)
    held_out = Batches(splits.x_val, splits.y_val, batch_size=256, shuffle=False, data_format=data_format)
    calibration = cifar10_calibration(source, 1024, model)
    start = time.perf_counter()
    student, report = convert(model, rank=args.rank, calibration=calibration, reconstruct=True,
                              iterations=args.iterations, relu_rounds=args.relu_rounds)  # fmt: skip
    reconstructed = student.get_weights()
    record = {"input": args.input, "rank": args.rank, "schedule": args.schedule, "iterations": args.iterations,
              "relu_rounds": args.relu_rounds,
              "reconstruction_seconds": time.perf_counter() - start, "train_images": len(splits.y_train),
              "held_out": splits.validation, "runs": [],
              "environment": _provenance.environment(), "reconstruction": report.reconstruction}  # fmt: skip
    student.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    accuracy = float(student.evaluate(held_out, verbose=0, return_dict=True)["accuracy"])
    record["reconstructed_held_out_accuracy"] = accuracy
    print(f"rank {args.rank} reconstructed: held-out accuracy {accuracy:.4f}", flush=True)
    grid = itertools.product(args.learning_rates, args.temperatures, args.label_weights, args.batch_sizes,
                             args.warmups, args.feature_weights, args.mixups)  # fmt: skip
    for learning_rate, temperature, label_weight, batch_size, warmup, feature_weight, mixup in grid:
        student.set_weights(reconstructed)
        start = time.perf_counter()
        # a fresh Batches: every setting sees the same order and augmentation
        train = Batches(splits.x_train, splits.y_train, batch_size=batch_size, augment=True, seed=0,
                        data_format=data_format)  # fmt: skip
        history = finetune(student, train, held_out, epochs=1, learning_rate=learning_rate, teacher=model,
                           verbose=0, schedule=args.schedule, temperature=temperature,
                           label_weight=label_weight, warmup=warmup, feature_weight=feature_weight,
                           mixup=mixup)  # fmt: skip
        run = {"learning_rate": learning_rate, "temperature": temperature, "label_weight": label_weight,
               "batch_size": batch_size, "warmup": warmup, "feature_weight": feature_weight, "mixup": mixup,
               "held_out_accuracy": float(history["val_accuracy"][-1]),
               "seconds": time.perf_counter() - start}  # fmt: skip
        record["runs"].append(run)
        accuracy = run["held_out_accuracy"]
        print(f"rank {args.rank} lr {learning_rate:g} {args.schedule} T {temperature:g} labels {label_weight:g} "
              f"batch {batch_size} warmup {warmup:g} features {feature_weight:g} mixup {mixup:g}: "
              f"held-out accuracy {accuracy:.4f}",
              flush=True)  # fmt: skip
    best = max(record["runs"], key=lambda r: r["held_out_accuracy"])
    record["chosen"], record["chosen_temperature"] = best["learning_rate"], best["temperature"]
    record["chosen_label_weight"], record["chosen_batch_size"] = best["label_weight"], best["batch_size"]
    record["chosen_warmup"], record["chosen_feature_weight"] = best["warmup"], best["feature_weight"]
    record["chosen_mixup"] = best["mixup"]
    suffix = "" if args.schedule == "constant" else f"-{args.schedule}"
    suffix += rounds_suffix(args.iterations, args.relu_rounds)
    for flag, values, default in (("T", args.temperatures, [4.0]), ("L", args.label_weights, [0.0]),
                                  ("b", args.batch_sizes, [128]), ("w", args.warmups, [0.0]),
                                  ("F", args.feature_weights, [0.0]), ("M", args.mixups, [0.0])):  # fmt: skip
        if values != default:
            suffix += f"-{flag}" + "-".join(f"{v:g}" for v in values)
    write_text(os.path.join(args.out, f"select-rank-{args.rank}{suffix}.json"), json.dumps(record, indent=2) + "\n")
    print(f"chosen: {record['chosen']:g}, temperature {record['chosen_temperature']:g}, label weight "
          f"{record['chosen_label_weight']:g}, batch {record['chosen_batch_size']}, "
          f"warmup {record['chosen_warmup']:g}, feature weight {record['chosen_feature_weight']:g}, "
          f"mixup {record['chosen_mixup']:g}")  # fmt: skip


if __name__ == "__main__":
    main()
