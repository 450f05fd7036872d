"""Exports every registry model to ONNX and LiteRT and checks each file in its runtime.

    KERAS_BACKEND=tensorflow python tools/export_zoo.py --output docs/results/export-cpu/zoo-tensorflow.json

Weights are random, and every BatchNormalization gets random moving statistics and
affine parameters (otherwise folding would be the identity), so the check covers the
folding too. Each file is compared with Keras on 32 N(0, 1) inputs: max abs difference
of the softmax outputs (the `sepconv export` criterion: <= 1e-5) and the operators of the
file. Needs the export extra.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import keras
import numpy as np

import sepconv
from sepconv import _provenance
from sepconv._atomic import write_text
from sepconv.export import check_export, export_model

FORMATS = {"onnx": ".onnx", "litert": ".tflite"}


def randomize_batch_norms(model, rng):
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, n).astype("float32"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=sepconv.models.list_models())
    parser.add_argument("--format", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            keras.utils.set_random_seed(0)
            model = sepconv.models.create_model(name)
            randomize_batch_norms(model, rng)
            x = rng.standard_normal((32, *model.inputs[0].shape[1:])).astype("float32")
            for fmt in args.format:
                path = os.path.join(folder, name + FORMATS[fmt])
                start = time.perf_counter()
                info = export_model(model, path)
                seconds = time.perf_counter() - start
                check = check_export(model, path, x)
                rows.append({"model": name, "format": fmt, "export_s": round(seconds, 1),
                             "batch_norm": info["batch_norm"], "ops": info["ops"], "check": check})  # fmt: skip
                print(f"{name:22s} {fmt:7s} max abs diff {check['max_abs_diff']:.1e} "
                      f"{'passed' if check['passed'] else 'FAILED'}", file=sys.stderr, flush=True)  # fmt: skip
    result = {"environment": _provenance.environment(), "results": rows}
    text = json.dumps(result, indent=2) + "\n"
    if args.output:
        write_text(args.output, text)
    print(text, end="")
    return 0 if all(row["check"]["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
