"""LiteRT int8 beyond the converter's defaults: percentile ranges and operators kept in float32.

The TFLite converter quantizes in two steps: it calibrates (runs the float model on the
representative images and stores each activation tensor's [min, max] in the file), then
its MLIR quantizer rounds the model to those ranges. `tf.lite.experimental.
QuantizationDebugger` takes the same two steps apart to keep chosen operators in float
(selective quantization); so does this module, with Keras' exporter writing the
calibrated model:

- percentile ranges: each stored [min, max] is clipped at the percentile of that tensor's
  absolute values on the calibration images (`sepconv.export._ranges`, as ONNX Runtime
  reads it), measured by running the calibrated file itself in LiteRT with every
  intermediate tensor kept;
- `float_ops=N`: the first N convolution and dense operators in graph order (the stem
  first), and every operator before the Nth, stay float32, with quantize and dequantize
  operators around them (LiteRT cannot mix 8- and 16-bit activations, so this is its way
  to keep the early layers, where rounding errors have the whole network to grow
  through, exact).
"""

import warnings

import numpy as np

from sepconv.export._ranges import AbsoluteHistograms, clipped

_BATCH = 32
_LINEAR = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _flatbuffer():
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils


def _ranged_tensors(subgraph):
    """Indices of the tensors the calibration gave one [min, max] (activations; weights have none)."""
    ranged = []
    for index, tensor in enumerate(subgraph.tensors):
        quantization = tensor.quantization
        if quantization is not None and quantization.min is not None and len(quantization.min) == 1:
            ranged.append(index)
    return ranged


def clip_ranges(calibrated, calibration, percentile):
    """`calibrated` (bytes) with each activation's range clipped at the `percentile` of |x| on `calibration`."""
    from ai_edge_litert.interpreter import Interpreter

    flatbuffer = _flatbuffer()
    model = flatbuffer.convert_bytearray_to_object(bytearray(calibrated))
    subgraph = model.subgraphs[0]
    ranged = _ranged_tensors(subgraph)
    low = np.array([subgraph.tensors[i].quantization.min[0] for i in ranged], np.float64)
    high = np.array([subgraph.tensors[i].quantization.max[0] for i in ranged], np.float64)
    histograms = AbsoluteHistograms(np.maximum(-low, high))
    with warnings.catch_warnings():  # keeping every tensor is what this reading needs, not a debugging leftover
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        interpreter = Interpreter(model_content=bytes(calibrated), experimental_preserve_all_tensors=True)
    image = interpreter.get_input_details()[0]["index"]
    for start in range(0, len(calibration), _BATCH):
        batch = calibration[start : start + _BATCH]
        interpreter.resize_tensor_input(image, batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(image, batch)
        interpreter.invoke()
        for i, index in enumerate(ranged):
            histograms.add(i, interpreter.get_tensor(index))
    low, high = clipped(low, high, histograms.thresholds(percentile))
    for index, minimum, maximum in zip(ranged, low, high):
        subgraph.tensors[index].quantization.min = [float(minimum)]
        subgraph.tensors[index].quantization.max = [float(maximum)]
    return bytes(flatbuffer.convert_object_to_bytearray(model))


def float_operators(calibrated, float_ops):
    """Output names of the operators up to the `float_ops`-th linear one (graph order); a ValueError if fewer.

    Counting convolutions and dense layers, not every operator, is what the QAT simulation
    counts; the pooling, adds and reshapes among them stay float32 too.
    """
    flatbuffer = _flatbuffer()
    model = flatbuffer.convert_bytearray_to_object(bytearray(calibrated))
    subgraph = model.subgraphs[0]
    linear = [i for i, op in enumerate(subgraph.operators)
              if flatbuffer.opcode_to_name(model, op.opcodeIndex) in _LINEAR]  # fmt: skip
    if float_ops > len(linear):
        raise ValueError(
            f"float_ops must be at most the model's {len(linear)} convolution and dense operators. "
            f"Received: float_ops={float_ops}"
        )
    end = linear[float_ops - 1] + 1 if float_ops else 0
    return [subgraph.tensors[op.outputs[0]].name.decode() for op in subgraph.operators[:end]]


def quantize(calibrated, float_operators=()):
    """int8 LiteRT bytes from a calibrated model: float32 input and output, `float_operators` kept in float32."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(
        calibrated,
        input_data_type=tf.float32,
        output_data_type=tf.float32,
        denylisted_nodes=list(float_operators) or None,
    )
