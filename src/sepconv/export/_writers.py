"""Writing ONNX and LiteRT files with Keras' exporters, float32 or int8.

Every file is written under a temporary name next to its target and renamed over it
when complete (`sepconv._atomic`): a failed export leaves nothing behind. Models are
traced within `sepconv.kernels.export_paths()`, so each separable layer becomes one
depthwise convolution and one 1x1 convolution.

int8 is post-training static quantization (weights and activations, scales from a
calibration set; Jacob et al. 2018):

- LiteRT: the TFLite converter with `Optimize.DEFAULT`, a representative dataset and
  `TFLITE_BUILTINS_INT8` only (full-integer kernels; float32 input and output, quantized
  at the edges).
- ONNX: ONNX Runtime's `quant_pre_process` (shape inference, graph optimization), then
  `quantize_static` in the QDQ format with per-channel weights, unsigned 8-bit
  activations and signed 8-bit weights, min-max calibration: what `quantize_static`'s
  documentation recommends for CNNs on x86 CPUs with VNNI (ONNX Runtime 1.32). Dynamic
  quantization is not offered: ONNX Runtime's CPU provider has no kernel for
  dynamically quantized convolutions (ConvInteger).

  Options that trade a little speed or size for agreement with the float model:
  `calibration_method="percentile"` (both formats) sets each activation's range from a
  percentile of its absolute values instead of min-max (ONNX Runtime's histogram
  calibrator; for LiteRT the same reading of the calibrated file, `_litert_int8`), so one
  rare large value no longer widens every step of the grid. The early layers, where a
  rounding error has the whole network to grow through, can stay wider: in ONNX,
  `int16_activations=N` keeps the first N quantized activations (the input, then the
  stem's outputs, in graph order) in 16 bits (mixed-precision QDQ, `com.microsoft` Q/DQ
  operators); LiteRT cannot mix 8- and 16-bit activations, so there `float_ops=N` keeps
  the first N convolution and dense operators, and all before them, in float32 (selective
  quantization). They cost little where the channels are few.
"""

import contextlib
import io
import logging
import os
import re
import tempfile

import numpy as np

from sepconv import _validation, kernels
from sepconv._atomic import atomic_path
from sepconv.export import _litert_int8, _runtime
from sepconv.export._ranges import PERCENTILE

_CALIBRATION_BATCH = 32
CALIBRATION_METHODS = ("minmax", "percentile")


@contextlib.contextmanager
def _quiet():
    """Silences the converters' progress messages (tf2onnx logs, Keras' prints)."""
    # The root logger too: ONNX Runtime's quantizer warns there when it raises the opset for 16 bits.
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "onnx", "absl", None)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _reason(error):
    """The most telling line of a converter's or runtime's (often multi-line) error."""
    text = str(error)
    missing = re.findall(r"Custom ops: ([\w, .]+)", text) or re.findall(r"No Op registered for (\w+)", text)
    if missing:
        return f"operators the runtime does not implement: {', '.join(sorted(set(missing)))}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "not supported" in line or "unsupported" in line.lower():
            return line
    return lines[0] if lines else type(error).__name__


def _export(model, temp, fmt, **options):
    """`model.export` to `temp`, then loads `temp` in its runtime: a file it cannot run is an error."""
    try:
        with kernels.export_paths(), _quiet():
            model.export(temp, format=fmt, verbose=False, **options)
        runtime = _runtime.OnnxRuntime(temp) if fmt == "onnx" else _runtime.LiteRT(temp)
        runtime.load()
    except ImportError:
        raise
    except Exception as error:  # converter and runtime errors (ConverterError, tf2onnx, torch.onnx, ORT)
        raise _refused(model, fmt, error) from error


def _refused(model, fmt, error):
    return ValueError(f"The model cannot be exported to {fmt}: {_reason(error)}. Received: model={model.name}")


def write_onnx(model, path, calibration=None, calibration_method="minmax", percentile=PERCENTILE,
               int16_activations=0):  # fmt: skip
    """Writes `model` to `path` as ONNX, float32, or int8 QDQ with `calibration` images (module docstring)."""
    with atomic_path(path, suffix=".onnx") as temp:
        if calibration is None:
            _export(model, temp, "onnx")
            return
        with tempfile.TemporaryDirectory() as folder:
            float_path = os.path.join(folder, "float.onnx")
            prepared = os.path.join(folder, "prepared.onnx")
            _export(model, float_path, "onnx")
            with _quiet():
                _quantize_onnx(float_path, prepared, temp, calibration, calibration_method, percentile,
                               int16_activations)  # fmt: skip


def _quantize_onnx(float_path, prepared, output, calibration, method="minmax", percentile=PERCENTILE,
                   int16_activations=0):  # fmt: skip
    from onnxruntime import quantization as q

    q.quant_pre_process(float_path, prepared)
    inputs = _input_name(prepared)

    class Reader(q.CalibrationDataReader):
        def __init__(self, images):
            # Equal batches: ONNX Runtime's histogram calibrators stack them into one array.
            size = max(d for d in range(1, _CALIBRATION_BATCH + 1) if len(images) % d == 0)
            self.batches = iter(images[i : i + size] for i in range(0, len(images), size))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {inputs: batch}

    settings = dict(
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax,
    )
    if int16_activations:
        # Which tensors the quantizer rounds, in graph order: read from a quick int8 pass.
        q.quantize_static(prepared, output, Reader(calibration[:1]), **settings)
        wide = quantized_activations(output)[:int16_activations]
        settings["extra_options"] = {
            "TensorQuantOverrides": {name: [{"quant_type": q.QuantType.QUInt16}] for name in wide},
            "UseQDQContribOps": True,
        }
    if method == "percentile":
        settings["calibrate_method"] = q.CalibrationMethod.Percentile
        settings.setdefault("extra_options", {})["CalibPercentile"] = percentile
    q.quantize_static(prepared, output, Reader(calibration), **settings)


def quantized_activations(onnx_path):
    """Names of the activation tensors a QDQ file quantizes, in graph order (weights left out)."""
    import onnx

    graph = onnx.load(onnx_path).graph
    constants = {tensor.name for tensor in graph.initializer}
    names = [node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"]
    # A graph output is quantized through a renamed copy; overrides name the output itself.
    names = [name.removesuffix("_QuantizeLinear_Input") for name in names if name not in constants]
    return list(dict.fromkeys(names))


def _input_name(onnx_path):
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    return session.get_inputs()[0].name


def write_litert(model, path, calibration=None, calibration_method="minmax", percentile=PERCENTILE, float_ops=0):
    """Writes `model` to `path` as LiteRT builtins only, float32, or int8 with `calibration` images.

    Builtin operators only (no `SELECT_TF_OPS`, which Keras allows by default): a model
    that needs TensorFlow kernels inside LiteRT is refused here rather than written as
    a file the plain LiteRT runtime cannot run. Percentile ranges and `float_ops` take
    the converter's calibration and quantization apart (`sepconv.export._litert_int8`).
    """
    import tensorflow as tf

    options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if calibration is not None:

        def representative():
            for i in range(len(calibration)):
                yield [calibration[i : i + 1]]

        options = {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": representative,
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
        }
    with atomic_path(path, suffix=".tflite") as temp:
        if calibration is None or (calibration_method == "minmax" and not float_ops):
            _export(model, temp, "litert", **options)
            return
        with tempfile.TemporaryDirectory() as folder:
            calibrated_path = os.path.join(folder, "calibrated.tflite")
            _export(model, calibrated_path, "litert", _experimental_calibrate_only=True, **options)
            with open(calibrated_path, "rb") as file:
                calibrated = file.read()
        if calibration_method == "percentile":
            calibrated = _litert_int8.clip_ranges(calibrated, calibration, percentile)
        float_operators = _litert_int8.float_operators(calibrated, float_ops)
        try:
            with _quiet():
                quantized = _litert_int8.quantize(calibrated, float_operators)
            with open(temp, "wb") as file:
                file.write(quantized)
            _runtime.LiteRT(temp).load()
        except Exception as error:  # the MLIR quantizer's and the runtime's errors
            raise _refused(model, "litert", error) from error


def check_range_method(method, percentile, name="calibration_method", percentile_name="percentile"):
    """How int8 activation ranges are read: one of `CALIBRATION_METHODS`, a percentile in (50, 100]."""
    _validation.choice(method, CALIBRATION_METHODS, name)
    _validation.number(percentile, percentile_name, low=50, high=100, low_open=True)


def check_calibration(calibration, model, name="calibration"):
    """float32 images shaped like `model`'s input, at least one."""
    array = np.asarray(calibration)
    expected = tuple(model.inputs[0].shape[1:])
    if array.ndim != len(expected) + 1 or tuple(array.shape[1:]) != expected or len(array) == 0:
        shown = "x".join("N" if d is None else str(d) for d in (None, *expected))
        raise ValueError(
            f"{name} must be images shaped like the model's input ({shown}). Received: {name}.shape={array.shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{name} must hold float images, normalized as in training. Received: {name}.dtype={array.dtype}"
        )
    return array.astype(np.float32)
