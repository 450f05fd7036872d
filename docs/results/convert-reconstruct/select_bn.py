"""BatchNorm during the distillation epoch only, folded away after it, chosen on held-out training images.

    KERAS_BACKEND=tensorflow python select_bn.py IN.keras --rank 1 --out DIR [--learning-rates 1e-3 3e-3] [--test]

Converts IN at `--rank` with reconstruction (as `select_lr.py`, `--iterations` and
`--relu-rounds` as there), then distills one epoch with `finetune(...,
reparameterize=True)` (cosine, warmup 0.1, T = 8, labels 0.6: the setting chosen
for rank 1; `--learning-rates` gridded) over the 45,000
training images `select_lr.py` uses: every converted layer trains with a BatchNorm
after its depthwise and its pointwise step, each starting as the identity of what
it normalizes, and folded into its kernels and bias after the epoch, so the
network scored has the converted shape and parameter count. Accuracy on the
held-out 5,000; the test set is not read. Every run trains on the same order and
augmentation (a fresh `Batches` each), or, with `--seeds`, on each seed's: one
epoch's outcome varies by seed more than settings differ, so a choice compares
means over the same seeds. `--clip-norm C` clips each update's gradients (`finetune`'s
`clip_norm`). Writes DIR/select-rank-R-bn-LRS.json with every run and each learning
rate's mean.
(The JSON files of commits 8dee1f7 and 2ce8ce1 came from this script's first form,
which did the same with its own copy of the code, the BatchNorms started on the
1,024 calibration images rather than the first training batch, and, at 8dee1f7,
each learning rate trained on a later epoch's order.)

With `--test`, the measurement once the step is chosen: distills over all 50,000
training images and scores the folded network on the 10,000 test images, as
`measure.py` does; writes DIR/rank-R-bn-lrLR.json.
"""

import argparse
import itertools
import json
import os
import statistics
import time

import keras
from measure import accuracy, rounds_suffix

from sepconv import _provenance
from sepconv._atomic import write_text
from sepconv.convert import cifar10_calibration, convert, finetune
from sepconv.convert._finetune import cifar10_image_format
from sepconv.data import Batches, load_cifar10, make_splits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[1e-3, 3e-3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="orders and augmentations, each a run")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--relu-rounds", type=int, default=2)
    parser.add_argument("--clip-norm", type=float, default=None, help="finetune's clip_norm")
    parser.add_argument("--test", action="store_true", help="train on all 50,000 and score the test set")
    args = parser.parse_args()
    source = os.environ["SEPCONV_DATA"]
    model = keras.saving.load_model(args.input)
    data_format = cifar10_image_format(model)
    splits = make_splits(load_cifar10(source), validation="test" if args.test else 5000, seed=0)
    scored = Batches(splits.x_val, splits.y_val, batch_size=256, shuffle=False, data_format=data_format)
    calibration = cifar10_calibration(source, 1024, model)
    start = time.perf_counter()
    student, report = convert(model, rank=args.rank, calibration=calibration, reconstruct=True,
                              iterations=args.iterations, relu_rounds=args.relu_rounds)  # fmt: skip
    record = {"input": args.input, "rank": args.rank, "scored_on": splits.validation,
              "iterations": args.iterations, "relu_rounds": args.relu_rounds, "clip_norm": args.clip_norm,
              "train_images": len(splits.y_train), "reconstruction_seconds": time.perf_counter() - start,
              "reconstructed_accuracy": accuracy(student, scored), "runs": [],
              "environment": _provenance.environment(), "reconstruction": report.reconstruction}  # fmt: skip
    reconstructed = student.get_weights()
    for learning_rate, seed in itertools.product(args.learning_rates, args.seeds):
        student.set_weights(reconstructed)
        train = Batches(splits.x_train, splits.y_train, batch_size=128, augment=True, seed=seed,
                        data_format=data_format)  # fmt: skip
        start = time.perf_counter()
        finetune(student, train, epochs=1, learning_rate=learning_rate, teacher=model, verbose=0, schedule="cosine",
                 temperature=8.0, label_weight=0.6, warmup=0.1, reparameterize=True,
                 clip_norm=args.clip_norm)  # fmt: skip
        run = {"learning_rate": learning_rate, "seed": seed, "accuracy": accuracy(student, scored),
               "params": student.count_params(), "seconds": time.perf_counter() - start}
        record["runs"].append(run)
        print(json.dumps(run), flush=True)
    record["means"] = {f"{rate:g}": statistics.fmean(run["accuracy"] for run in record["runs"]
                                                     if run["learning_rate"] == rate) for rate in args.learning_rates}
    print(json.dumps(record["means"]), flush=True)
    os.makedirs(args.out, exist_ok=True)
    rates = "-".join(f"{rate:g}" for rate in args.learning_rates)
    rates += rounds_suffix(args.iterations, args.relu_rounds)
    rates += f"-clip{args.clip_norm:g}" if args.clip_norm else ""
    rates += "-s" + "-".join(map(str, args.seeds)) if args.seeds != [0] else ""
    name = f"rank-{args.rank}-bn-lr{rates}.json" if args.test else f"select-rank-{args.rank}-bn-{rates}.json"
    write_text(os.path.join(args.out, name), json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
