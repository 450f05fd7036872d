"""Conversion measured at each rank: SVD only, after reconstruction, after one distillation epoch.

    KERAS_BACKEND=tensorflow python measure.py IN.keras --out DIR [--ranks 1 2 4] [--train-size N]

Per rank, on the full CIFAR-10 test set: the test accuracy of the SVD conversion
(`sepconv convert --rank R`), after reconstruction on `--calibration-size`
training images (`--reconstruct`), and after `--epochs` distillation epochs
from IN over `--train-size` training images (`--finetune-epochs 1`), with the
wall time and images seen of each stage. One JSON per rank in DIR, with the
report and the environment. The CLI does the same conversion and fine-tune:

    sepconv convert IN.keras rank-R.keras --rank R --calibration-data $SEPCONV_DATA --reconstruct \
        --finetune-epochs 1 --data $SEPCONV_DATA --json
"""

import argparse
import json
import os
import time

import keras

from sepconv import _provenance
from sepconv._atomic import write_text
from sepconv.convert import cifar10_calibration, convert, finetune_on_cifar10
from sepconv.convert._finetune import SCHEDULES, cifar10_image_format
from sepconv.data import Batches, load_cifar10


def rounds_suffix(iterations, relu_rounds):
    """The file-name tag of a reconstruction with other rounds than the defaults (4 and 2)."""
    return (f"-i{iterations}" if iterations != 4 else "") + (f"-r{relu_rounds}" if relu_rounds != 2 else "")


def accuracy(model, test):
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--out", required=True)
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--calibration-size", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--relu-rounds", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--schedule", choices=SCHEDULES, default="constant")
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--label-weight", type=float, default=0.0)
    parser.add_argument("--feature-weight", type=float, default=0.0)
    parser.add_argument("--mixup", type=float, default=0.0)
    parser.add_argument("--reparameterize", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="the distillation's order and augmentation")
    parser.add_argument("--train-batch-norm", action="store_true")
    parser.add_argument("--exclude", nargs="+", metavar="PATTERN", help="layers left as they are (convert --exclude)")
    args = parser.parse_args()
    source = os.environ["SEPCONV_DATA"]
    os.makedirs(args.out, exist_ok=True)
    model = keras.saving.load_model(args.input)
    data = load_cifar10(source)
    test = Batches(data.x_test, data.y_test, batch_size=256, shuffle=False, data_format=cifar10_image_format(model))
    calibration = cifar10_calibration(source, args.calibration_size, model)
    for rank in args.ranks:
        row = {"input": args.input, "rank": rank, "config": vars(args), "environment": _provenance.environment()}
        start = time.perf_counter()
        svd_model, svd_report = convert(model, rank=rank, exclude=args.exclude, calibration=calibration[:64])
        row["svd"] = {"seconds": time.perf_counter() - start, "accuracy": accuracy(svd_model, test)}
        start = time.perf_counter()
        new_model, report = convert(model, rank=rank, exclude=args.exclude, calibration=calibration, reconstruct=True,
                                    iterations=args.iterations, relu_rounds=args.relu_rounds)  # fmt: skip
        seconds = time.perf_counter() - start
        # The ReLU rounds' passes run both networks again only where the layer's inputs
        # exceed what is kept between passes (`KEPT_BYTES`).
        passes = sum(row.reconstruction_passes for row in report.layers)
        row["reconstruction"] = {
            "seconds": seconds,
            # one forward pass of each model per pass, and one of the original to measure errors
            "images_seen": args.calibration_size * (2 * passes + 1),
            "accuracy": accuracy(new_model, test),
        }
        row["report"] = report.to_dict()
        row["finetune"] = finetune_on_cifar10(
            new_model, model, source, epochs=args.epochs, train_size=args.train_size,
            learning_rate=args.learning_rate, schedule=args.schedule, warmup=args.warmup, temperature=args.temperature,
            label_weight=args.label_weight, feature_weight=args.feature_weight, mixup=args.mixup,
            reparameterize=args.reparameterize, seed=args.seed,
            freeze_batch_norm=not args.train_batch_norm, verbose=0,
        )  # fmt: skip
        write_text(os.path.join(args.out, f"rank-{rank}.json"), json.dumps(row, indent=2) + "\n")
        tuned = row["finetune"]
        print(
            f"rank {rank}: params {report.params_after:,}  svd {row['svd']['accuracy']:.4f}  "
            f"reconstructed {row['reconstruction']['accuracy']:.4f} ({seconds:.0f} s)  "
            f"distilled {tuned['accuracy']['finetuned']:.4f} ({tuned['seconds']:.0f} s, "
            f"{tuned['train_images'] * args.epochs:,} images)  original {tuned['accuracy']['original']:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
