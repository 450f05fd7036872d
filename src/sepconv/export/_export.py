"""`export_model`: fold, write, and `check_export`: run the file, compare with Keras."""

import os

import keras
import numpy as np

from sepconv import _validation
from sepconv.export import _formats, _runtime, _writers
from sepconv.export._folding import float32_model, fold_batch_norm

# Float files must match Keras to this max abs difference (softmax outputs); int8 files
# must agree on the top-1 class of this fraction of the checked images.
FLOAT_TOLERANCE = 1e-5
INT8_AGREEMENT = 0.99


def export_model(model, path, *, quantize="none", calibration=None, fold=True, calibration_method="minmax",
                 percentile=_writers.PERCENTILE, int16_activations=0, float_ops=0):  # fmt: skip
    """Writes `model` for ONNX Runtime (`.onnx`) or LiteRT (`.tflite`); returns what was written.

    Args:
        model: a Keras model (Functional or Sequential).
        path: the file to write; its extension picks the format.
        quantize: "none" (float32) or "int8" (post-training static quantization of
            weights and activations, see `sepconv.export._writers`).
        calibration: for "int8", float32 images shaped like the model's input and
            normalized as in training (a few hundred are enough).
        fold: fold BatchNormalization into the kernel and bias before it first
            (`fold_batch_norm`); the exported graph has no normalization left there.
        calibration_method: int8 activation ranges, "minmax" or "percentile" of each
            activation's absolute values (`percentile`, in %).
        int16_activations: ONNX only: this many of the first quantized activations (the
            input first, in graph order) kept in 16 bits; 0 keeps all in 8 bits.
        float_ops: LiteRT only: this many of the first convolution and dense operators
            (graph order, the stem first), and every operator before them, kept in float32;
            0 quantizes all.

    Returns:
        A JSON-ready dict: path, format, backend, quantize, folded/left BatchNormalization
        counts, calibration size, the int8 settings, file size in bytes, operators of the file.

    Raises:
        ValueError: an unknown extension or quantization, a format the backend cannot
            write, calibration data of the wrong shape, layers the format cannot express.
        MissingPackageError: an exporter or runtime package is missing (an ImportError).
    """
    _validation.choice(quantize, _formats.QUANTIZATIONS, "quantize")
    settings = int8_options(_formats.format_of(path), quantize, calibration_method, percentile, int16_activations,
                            float_ops)  # fmt: skip
    fmt = _formats.check_request(path, quantize)
    _validation.boolean(fold, "fold")
    if quantize == "int8":
        if calibration is None:
            raise ValueError(
                "int8 quantization needs calibration images shaped like the model's input. Received: calibration=None"
            )
        calibration = _writers.check_calibration(calibration, model)
    elif calibration is not None:
        raise ValueError(f"calibration is used only with quantize='int8'. Received: quantize={quantize!r}")
    model = float32_model(model)
    folded, counts = fold_batch_norm(model) if fold else (model, {"folded": 0, "left": None})
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"No such folder for the exported file. Received: path={path}")
    # Keras exports only models that have run once (a clone has not).
    zeros = [np.zeros((1, *t.shape[1:]), t.dtype) for t in folded.inputs]
    folded(zeros[0] if len(zeros) == 1 else zeros, training=False)
    if fmt == "onnx":
        _writers.write_onnx(folded, path, calibration, **settings)
    else:
        _writers.write_litert(folded, path, calibration, **settings)
    return {
        "path": str(path),
        "format": fmt,
        "backend": keras.backend.backend(),
        "quantize": quantize,
        "batch_norm": counts,
        "calibration_images": None if calibration is None else len(calibration),
        **({"int8": settings} if quantize == "int8" else {}),
        "bytes": os.path.getsize(path),
        "ops": dict(sorted(_runtime.open_runtime(path).ops().items())),
    }


def _python_spelling(name, value=None):
    return name if value is None else f"{name}={value!r}"


def int8_options(fmt, quantize, calibration_method, percentile, int16_activations, float_ops=0,
                 spell=_python_spelling):  # fmt: skip
    """The quantizer's settings, checked: 16-bit activations are ONNX-only, float32 operators LiteRT-only.

    `spell(name)` and `spell(name, value)` write an argument in the errors: Python's
    `name=value` by default; the CLI passes its flags' spelling.
    """
    _writers.check_range_method(calibration_method, percentile, spell("calibration_method"), spell("percentile"))
    _validation.non_negative_int(int16_activations, spell("int16_activations"))
    _validation.non_negative_int(float_ops, spell("float_ops"))
    settings = {"calibration_method": calibration_method, "int16_activations": int16_activations,
                "float_ops": float_ops}  # fmt: skip
    defaults = {"calibration_method": "minmax", "int16_activations": 0, "float_ops": 0}
    only_in = {
        "int16_activations": ("onnx", f"an .onnx file: LiteRT cannot mix 8- and 16-bit activations "
                                      f"({spell('float_ops')} keeps its first operators in float32 instead)"),
        "float_ops": ("litert", f"a .tflite file (for ONNX Runtime, {spell('int16_activations')} keeps the first "
                                f"activations in 16 bits)"),
    }  # fmt: skip
    for name, value in settings.items():
        if value == defaults[name]:
            continue
        if quantize != "int8":
            raise ValueError(
                f"{spell(name)} is used only with {spell('quantize', 'int8')}. Received: {spell(name, value)}"
            )
        if name in only_in and fmt != only_in[name][0]:
            raise ValueError(
                f"{spell(name)} other than the default needs {only_in[name][1]}. Received: {spell(name, value)}"
            )
    if fmt == "onnx":
        settings.pop("float_ops")
    else:
        settings.pop("int16_activations")
    if calibration_method == "percentile":
        settings["percentile"] = percentile
    return settings


def check_export(model, path, x, y=None, *, quantize="none", threads=None, batch_size=64):
    """Runs the exported `path` in its runtime on `x` and compares it with `model` (Keras).

    Returns a dict: samples, max_abs_diff, top1_agreement, the criterion and whether it
    `passed` (float: max abs difference <= `FLOAT_TOLERANCE`; int8: top-1 agreement >=
    `INT8_AGREEMENT`), and with labels `y` the test accuracy of both. A mixed-precision
    `model` is compared as the float32 twin `export_model` wrote (`float32_model`).
    """
    model = float32_model(model)
    runtime = _runtime.open_runtime(path, threads)
    x = np.asarray(x, np.float32)
    expected = keras.ops.convert_to_numpy(model.predict(x, batch_size=batch_size, verbose=0))
    got = _runtime.run_batches(runtime, x, batch_size)
    if expected.shape != got.shape:
        raise ValueError(
            f"The exported file's outputs do not have the model's shape {expected.shape}. Received: shape={got.shape}"
        )
    difference = float(np.max(np.abs(expected.astype(np.float64) - got)))
    agreement = float(np.mean(np.argmax(expected, -1) == np.argmax(got, -1)))
    result = {"runtime": runtime.name, "samples": len(x), "max_abs_diff": difference, "top1_agreement": agreement}
    if quantize == "int8":
        result.update(criterion=f"top1_agreement >= {INT8_AGREEMENT}", passed=agreement >= INT8_AGREEMENT)
    else:
        result.update(criterion=f"max_abs_diff <= {FLOAT_TOLERANCE:g}", passed=difference <= FLOAT_TOLERANCE)
    if y is not None:
        y = np.asarray(y).reshape(-1)
        result["keras_accuracy"] = float(np.mean(np.argmax(expected, -1) == y))
        result["exported_accuracy"] = float(np.mean(np.argmax(got, -1) == y))
    return result


def cifar10_images(source, model, size=None, split="test", seed=0):
    """`(images, labels)`: `size` CIFAR-10 images of `split` (all by default), normalized as in training.

    A seeded random draw, kept in file order (image-folder copies list images class by class).
    """
    from sepconv.convert._finetune import cifar10_image_format
    from sepconv.data import Batches, load_cifar10

    data = load_cifar10(source, progress=False)
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    if size is not None and size < len(y):
        rows = np.sort(np.random.default_rng(seed).permutation(len(y))[:size])
        x, y = x[rows], y[rows]
    batches = Batches(x, y, batch_size=len(y), shuffle=False, data_format=cifar10_image_format(model))
    return batches[0]
