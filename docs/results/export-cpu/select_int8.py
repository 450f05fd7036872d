"""Chooses int8 export settings on held-out *training* images, never the test set.

    python select_int8.py MODEL.keras --format tflite --output select.json [--ranges minmax 99.999 --counts 0 3]
        [--qat-epochs 1 2 --qat-learning-rates 3e-4 1e-3]

Calibrates on the 1,024 training images `sepconv export --calibration-size 1024` uses
(the seeded draw of `sepconv.export.cifar10_images`), then checks each setting on the
next 10,000 of that draw (training images outside the calibration set): top-1 agreement
with the Keras model and accuracy. With `--qat-epochs`, each setting is also measured after
quantization-aware fine-tuning (`sepconv.export.finetune_for_int8`, as `sepconv export
--qat-epochs` runs it) over the other 40,000 training images, so the held-out images stay
unseen. Needs SEPCONV_DATA (a CIFAR-10 copy).
"""

import argparse
import itertools
import json
import os
import tempfile
import time

import keras
import numpy as np

from sepconv import _provenance
from sepconv.convert._finetune import cifar10_image_format
from sepconv.data import Batches, load_cifar10
from sepconv.export import check_export, cifar10_images, export_model, finetune_for_int8, float32_model

CALIBRATION = 1024
HELD_OUT = 10_000


def held_out(source, model):
    """`((x, y) held out, x for QAT)`: the 10,000 images after the calibration draw, and all the others."""
    data = load_cifar10(source, progress=False)
    order = np.random.default_rng(0).permutation(len(data.y_train))
    held = np.sort(order[CALIBRATION : CALIBRATION + HELD_OUT])
    rest = np.sort(np.concatenate([order[:CALIBRATION], order[CALIBRATION + HELD_OUT :]]))

    def images(rows):
        return Batches(data.x_train[rows], data.y_train[rows], batch_size=len(rows), shuffle=False,
                       data_format=cifar10_image_format(model))[0]  # fmt: skip

    return images(held), images(rest)[0]


def settings(fmt, ranges, counts):
    """`sepconv.export.export_model` keyword sets: each range reading with each count of wider early layers."""
    wide = "float_ops" if fmt == "tflite" else "int16_activations"
    for reading in ranges:
        for n in counts:
            options = {"calibration_method": "minmax" if reading == "minmax" else "percentile", wide: n}
            if reading != "minmax":
                options["percentile"] = float(reading)
            yield options


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--format", choices=("tflite", "onnx"), default="tflite")
    parser.add_argument("--ranges", nargs="+", default=["minmax", "99.99", "99.999"],
                        help="minmax and/or percentiles")
    parser.add_argument("--counts", nargs="+", type=int, default=[0, 1, 2],
                        help="float32 operators (tflite) or 16-bit activations (onnx)")
    parser.add_argument("--qat-epochs", nargs="+", type=int, default=[0], help="0: post-training only")
    parser.add_argument("--qat-learning-rates", nargs="+", type=float, default=[1e-3])
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    source = os.environ["SEPCONV_DATA"]
    model = float32_model(keras.saving.load_model(args.model))
    calibration = cifar10_images(source, model, CALIBRATION, split="train")[0]
    (x, y), qat_images = held_out(source, model)
    qat_grid = [(e, lr) for e in args.qat_epochs for lr in (args.qat_learning_rates if e else [None])]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for options, (epochs, learning_rate) in itertools.product(
            settings(args.format, args.ranges, args.counts), qat_grid
        ):
            path = os.path.join(folder, f"m.{args.format}")
            exported, qat = model, {}
            if epochs:
                start = time.perf_counter()
                exported = finetune_for_int8(model, qat_images, calibration, epochs=epochs,
                                             learning_rate=learning_rate, verbose=0, **options).float_model  # fmt: skip
                qat = {"qat_epochs": epochs, "qat_learning_rate": learning_rate, "qat_images": len(qat_images),
                       "qat_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
            export_model(exported, path, quantize="int8", calibration=calibration, **options)
            check = check_export(model, path, x, y, quantize="int8")  # against the float model, QAT or not
            row = {**options, **qat, **{k: check[k] for k in ("top1_agreement", "exported_accuracy", "max_abs_diff")},
                   "keras_accuracy": check["keras_accuracy"], "bytes": os.path.getsize(path)}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"model": args.model, "format": args.format, "calibration_images": CALIBRATION,
              "held_out": f"{HELD_OUT} training images outside the calibration set",
              "qat_images": "the other training images" if any(args.qat_epochs) else None,
              "environment": _provenance.environment(), "results": rows}  # fmt: skip
    with open(args.output, "w") as file:
        json.dump(result, file, indent=1)


if __name__ == "__main__":
    main()
