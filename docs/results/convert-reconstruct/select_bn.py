"""BatchNorm during the distillation epoch only, folded away after it, chosen on held-out training images.

    KERAS_BACKEND=tensorflow python select_bn.py IN.keras --rank 1 --out DIR [--learning-rates 1e-3 3e-3] [--test]

Converts IN at `--rank` with reconstruction (as `select_lr.py`), then gives every
converted layer a BatchNorm after its depthwise step and one after its pointwise
step, each initialized on the calibration images to the identity of what it
normalizes (scale = the input's standard deviation, offset = its mean), so the
network computes what the reconstructed one did. It distills one epoch (cosine,
warmup 0.1, T = 8, labels 0.6: the setting chosen for rank 1; `--learning-rates` gridded) over the
45,000 training images `select_lr.py` uses, with the BatchNorms in training mode, then folds each
into the depthwise kernel and the pointwise kernel and bias: the network that is
scored has the converted shape, its parameter count unchanged. Accuracy on the
held-out 5,000; the test set is not read. Each run starts from the first epoch's
order and augmentation (a fresh `Batches`). Writes DIR/select-rank-R-bn-LRS.json.

With `--test`, the measurement once the step is chosen: distills over all 50,000
training images and scores the folded network on the 10,000 test images, as
`measure.py` does; writes DIR/rank-R-bn-lrLR.json.
"""

import argparse
import json
import os
import time

import keras
import numpy as np

from sepconv import _provenance
from sepconv._atomic import write_text
from sepconv.convert import cifar10_calibration, convert, finetune
from sepconv.convert._finetune import cifar10_image_format
from sepconv.data import Batches, load_cifar10, make_splits
from sepconv.layers import DepthwiseSeparableConv2D

EPSILON = 1e-3  # Keras' BatchNormalization default


def with_batch_norm(student):
    """A copy of `student` whose separable layers normalize after each step, and the copy's separable layers."""

    def clone(layer):
        if isinstance(layer, DepthwiseSeparableConv2D):
            config = layer.get_config() | {"depthwise_normalization": "batch", "normalization": "batch"}
            return DepthwiseSeparableConv2D.from_config(config)
        return layer.__class__.from_config(layer.get_config())

    normed = keras.models.clone_model(student, clone_function=clone)
    for old, new in zip(student.layers, normed.layers):
        for source in old.weights:
            target = next(w for w in new.weights if w.path.split("/")[-1] == source.path.split("/")[-1])
            target.assign(source)
    return normed, [layer for layer in normed.layers if isinstance(layer, DepthwiseSeparableConv2D)]


def initialize_identity(model, layers, images):
    """Each BatchNorm in order: its moving statistics are its input's on `images`, then scale and offset undo them.

    Earlier BatchNorms are already the identity in inference mode; later ones are near it
    (statistics 0 and 1, scale 1, offset 0), so each sees what the reconstructed network computes.
    """
    norms = [norm for layer in layers for norm in (layer.depthwise_norm, layer.norm)]
    for norm in norms:
        norm.trainable = False
    for norm in norms:
        norm.trainable, momentum = True, norm.momentum
        norm.momentum = 0.0
        model(images, training=True)
        norm.momentum, norm.trainable = momentum, False
        norm.gamma.assign(keras.ops.sqrt(norm.moving_variance + norm.epsilon))
        norm.beta.assign(norm.moving_mean)
    for norm in norms:
        norm.trainable = True


def fold(normed, normed_layers, student):
    """Writes `normed`'s inference function into `student`: each normed layer folded, the other layers copied."""
    for layer in normed.layers:
        if layer not in normed_layers:
            student.get_layer(layer.name).set_weights(layer.get_weights())
    for layer in normed_layers:
        depthwise = keras.ops.convert_to_numpy(layer.depthwise_kernel).astype("float64")
        pointwise = keras.ops.convert_to_numpy(layer.pointwise_kernel).astype("float64")
        bias = keras.ops.convert_to_numpy(layer.bias).astype("float64")
        (a1, b1), (a2, b2) = (affine(norm) for norm in (layer.depthwise_norm, layer.norm))
        # depthwise kernel (k, k, C, M): its flattened output channel is c * M + m
        depthwise = depthwise * a1.reshape(depthwise.shape[2:])
        bias = b1 @ pointwise[0, 0] + bias  # the middle offset passes through the pointwise step
        pointwise = pointwise * a2
        bias = a2 * bias + b2
        plain = student.get_layer(layer.name)
        for variable, value in ((plain.depthwise_kernel, depthwise), (plain.pointwise_kernel, pointwise),
                                (plain.bias, bias)):  # fmt: skip
            variable.assign(value.astype("float32"))


def affine(norm):
    """(a, b) with norm(x) = a * x + b in inference mode, float64."""
    gamma, beta, mean, variance = (keras.ops.convert_to_numpy(v).astype("float64") for v in
                                   (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))  # fmt: skip
    a = gamma / np.sqrt(variance + norm.epsilon)
    return a, beta - a * mean


def distill_with_batch_norm(student, teacher, train, calibration, learning_rate):
    """Distills `student` in place for one epoch with BatchNorm in its separable layers, then folds it away.

    Returns the seconds of training and the normed network (for its own accuracy).
    """
    normed, layers = with_batch_norm(student)
    initialize_identity(normed, layers, calibration)
    start = time.perf_counter()
    finetune(normed, train, epochs=1, learning_rate=learning_rate, teacher=teacher, verbose=0, schedule="cosine",
             temperature=8.0, label_weight=0.6, warmup=0.1, freeze_batch_norm=False)  # fmt: skip
    seconds = time.perf_counter() - start
    fold(normed, layers, student)
    return seconds, normed


def accuracy(model, data):
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return float(model.evaluate(data, verbose=0, return_dict=True)["accuracy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[1e-3, 3e-3])
    parser.add_argument("--test", action="store_true", help="train on all 50,000 and score the test set")
    args = parser.parse_args()
    source = os.environ["SEPCONV_DATA"]
    model = keras.saving.load_model(args.input)
    data_format = cifar10_image_format(model)
    splits = make_splits(load_cifar10(source), validation="test" if args.test else 5000, seed=0)
    scored = Batches(splits.x_val, splits.y_val, batch_size=256, shuffle=False, data_format=data_format)
    calibration = cifar10_calibration(source, 1024, model)
    start = time.perf_counter()
    student, report = convert(model, rank=args.rank, calibration=calibration, reconstruct=True)
    record = {"input": args.input, "rank": args.rank, "scored_on": splits.validation,
              "train_images": len(splits.y_train), "reconstruction_seconds": time.perf_counter() - start,
              "reconstructed_accuracy": accuracy(student, scored), "runs": [],
              "environment": _provenance.environment(), "reconstruction": report.reconstruction}  # fmt: skip
    reconstructed = student.get_weights()
    for learning_rate in args.learning_rates:
        student.set_weights(reconstructed)
        train = Batches(splits.x_train, splits.y_train, batch_size=128, augment=True, seed=0, data_format=data_format)
        seconds, normed = distill_with_batch_norm(student, model, train, calibration, learning_rate)
        run = {"learning_rate": learning_rate, "normed_accuracy": accuracy(normed, scored),
               "accuracy": accuracy(student, scored), "params": student.count_params(), "seconds": seconds}
        record["runs"].append(run)
        print(json.dumps(run), flush=True)
    os.makedirs(args.out, exist_ok=True)
    rates = "-".join(f"{rate:g}" for rate in args.learning_rates)
    name = f"rank-{args.rank}-bn-lr{rates}.json" if args.test else f"select-rank-{args.rank}-bn-{rates}.json"
    write_text(os.path.join(args.out, name), json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
