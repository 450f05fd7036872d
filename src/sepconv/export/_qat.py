"""Quantization-aware fine-tuning before int8 export, distilled from the float model.

Post-training int8 rounds every activation to a 256-level grid; on a converged network
that flips the top-1 class of about 2% of images (README, "int8"). Fine-tuning with the
rounding in the forward pass lets the weights adapt to it (Jacob et al. 2018, Sec. 3;
Krishnamoorthi 2018, "Quantizing deep convolutional networks for efficient inference",
Sec. 3.2). Here:

- BatchNormalization is folded first (`fold_batch_norm`) and the folded network is
  fine-tuned: what is trained is what is exported (Krishnamoorthi 2018, Sec. 3.2.1,
  fine-tuning with frozen statistics).
- The simulated network rounds where ONNX Runtime's QDQ quantizer and the TFLite
  converter round: weights to signed 8 bits per output channel, symmetric (scale
  `max|w| / 127`); activations to unsigned 8 bits per tensor over the calibration
  set's [min, max] widened to hold 0 (scale `(max - min) / 255`, integer zero point):
  the network input, each convolution's or dense layer's output after its ReLU (the
  runtimes fuse the ReLU into the range), the middle of each separable layer, every
  merge and average, the logits and the softmax. Max-pooling, flatten and reshape keep
  their input's grid. Gradients pass the rounding straight through inside the range
  and stop outside it (Bengio et al. 2013; Jacob et al. 2018, Sec. 3.1).
- The export options are simulated too: percentile ranges (each activation's range
  clipped at the percentile of its absolute values, from a 2,048-bin histogram over the
  calibration set, as ONNX Runtime's calibrator does; `sepconv.export._ranges`) and
  ONNX's first N activations, in graph order, on 65,536 levels instead of 256. LiteRT's
  `float_ops=N` keeps the first N linear steps (in the order the layers are called, as
  the converter orders the operators when those come first) with float32 weights and
  outputs, and the pooling, merges and activations before the Nth; a tensor they leave is
  rounded where an int8 step reads it, as LiteRT's quantize operators do.
- The target is the float model's own output distribution (Hinton et al. 2015,
  temperature 1), not the labels: the int8 file should answer what the float model
  answers. Ranges come from the same calibration images the export then uses, before
  and again after fine-tuning, so the exported file rounds where the simulation did.
"""

import keras
import numpy as np
from keras import ops

from sepconv import _validation, kernels
from sepconv._schedules import warmup_cosine
from sepconv.export._folding import float32_model, fold_batch_norm
from sepconv.export._ranges import PERCENTILE, AbsoluteHistograms, clipped
from sepconv.export._writers import check_calibration, check_range_method
from sepconv.layers import BaseDepthwiseSeparableConv

WEIGHT_LEVELS = 127  # signed int8, symmetric: [-127, 127] (ONNX Runtime, TFLite)
ACTIVATION_LEVELS = 255  # unsigned int8 with a zero point: [0, 255]
WIDE_LEVELS = 65535  # unsigned int16, for `int16_activations`
_SAME_GRID = (
    keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D, keras.layers.Flatten,
    keras.layers.Reshape, keras.layers.Dropout, keras.layers.InputLayer, keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D, keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D,
)  # fmt: skip
_RELU_NAMES = ("relu", "relu6")


def finetune_for_int8(model, images, calibration, *, epochs=1, learning_rate=1e-3, batch_size=128, verbose="auto",
                      calibration_method="minmax", percentile=PERCENTILE, int16_activations=0,
                      float_ops=0):  # fmt: skip
    """Quantization-aware fine-tuning of `model` (module docstring); returns the `SimulatedInt8`.

    Export its `float_model` with `export_model(..., quantize="int8", calibration=calibration)`
    and the same `calibration_method`, `percentile`, `int16_activations` and `float_ops`: the same
    calibration images and settings, so the file rounds where the simulation did. `model`
    itself is not modified.

    Args:
        model: a Keras model with one input and one output, layers as `SimulatedInt8` takes.
        images: float32 training images, normalized as in training (no labels needed).
        calibration: float32 images for the activation ranges (a few hundred).
        epochs: passes over `images`; learning_rate: SGD's at the start of its cosine decay.
        calibration_method, percentile, int16_activations, float_ops: as `export_model`'s.
    """
    images = check_calibration(images, model, name="images")
    calibration = check_calibration(calibration, model)
    _validation.positive_int(epochs, "epochs")
    _validation.number(learning_rate, "learning_rate", low=0, low_open=True)
    _validation.positive_int(batch_size, "batch_size")
    check_range_method(calibration_method, percentile)
    model = float32_model(model)  # what export_model writes
    simulation = SimulatedInt8(model, int16_activations=int16_activations, float_ops=float_ops)
    simulation.calibrate(calibration, method=calibration_method, percentile=percentile)
    teacher = model.predict(images, batch_size=256, verbose=0)
    simulation.finetune(images, teacher, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                        verbose=verbose)  # fmt: skip
    simulation.calibrate(calibration, method=calibration_method, percentile=percentile)
    return simulation


def quantize_weight(kernel, channel_axes, enabled=1.0):
    """`kernel` rounded to int8 per output channel (`channel_axes`), symmetric; straight-through gradient."""
    reduce_axes = tuple(a for a in range(len(kernel.shape)) if a not in channel_axes)
    scale = ops.max(ops.abs(kernel), axis=reduce_axes, keepdims=True) / WEIGHT_LEVELS
    scale = ops.where(scale > 0, scale, ops.ones_like(scale))
    rounded = ops.round(kernel / scale) * scale
    return kernel + enabled * ops.stop_gradient(rounded - kernel)


@keras.saving.register_keras_serializable(package="sepconv")
class ActivationQuantizer(keras.layers.Layer):
    """Rounds a tensor to 256 levels (or `levels` + 1) over [minimum, maximum] (widened to hold 0), as uint8 QDQ does.

    `minimum` and `maximum` are set from calibration data (`calibrate`), or fixed by
    `fixed_range` (a softmax's [0, 1], as the runtimes fix it); `enabled` = 0 passes the
    input through unchanged, which is how ranges are measured on the float network, as
    the exporters measure them.
    """

    def __init__(self, fixed_range=None, levels=ACTIVATION_LEVELS, **kwargs):
        super().__init__(**kwargs)
        self.fixed_range = None if fixed_range is None else tuple(float(v) for v in fixed_range)
        self.levels = int(levels)

    def build(self, input_shape):
        self.minimum = self.add_weight(shape=(), initializer="zeros", trainable=False, name="minimum")
        self.maximum = self.add_weight(shape=(), initializer="zeros", trainable=False, name="maximum")
        self.enabled = self.add_weight(shape=(), initializer="ones", trainable=False, name="enabled")

    def call(self, x):
        low, high = ops.minimum(self.minimum, 0.0), ops.maximum(self.maximum, 0.0)
        scale = ops.maximum((high - low) / self.levels, 1e-12)
        zero = ops.round(-low / scale)
        rounded = (ops.clip(ops.round(x / scale) + zero, 0.0, self.levels) - zero) * scale
        clipped = ops.clip(x, low, high)
        quantized = clipped + ops.stop_gradient(rounded - clipped)
        return x + self.enabled * (quantized - x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fixed_range": self.fixed_range, "levels": self.levels}


class _QuantizedStep(keras.layers.Layer):
    """One linear step of `source` with int8 weights; uses (and trains) `source`'s own variables."""

    def __init__(self, source, step, rounded=True, **kwargs):
        super().__init__(name=f"{source.name}_{step}_{'int8' if rounded else 'float32'}", **kwargs)
        self.source, self.step, self.rounded = source, step, rounded

    def build(self, input_shape):
        self.enabled = self.add_weight(shape=(), initializer="ones", trainable=False, name="enabled")

    def _quantized(self, kernel, channel_axes):
        return quantize_weight(kernel, channel_axes, self.enabled) if self.rounded else kernel

    def call(self, x):
        layer = self.source
        if self.step == "depthwise":  # sepconv's or Keras' separable layer, Keras' DepthwiseConv
            keras_depthwise = isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D))
            kernel = layer.kernel if keras_depthwise else layer.depthwise_kernel
            kernel = self._quantized(kernel, (kernel.ndim - 2, kernel.ndim - 1))  # per (channel, multiplier)
            x = kernels.depthwise_conv(x, kernel, layer.strides, layer.padding, layer.data_format, layer.dilation_rate)
            bias = layer.bias if keras_depthwise else getattr(layer, "depthwise_bias", None)
            if bias is not None:
                x = kernels.add_bias(x, bias, layer.data_format)
            return x
        if self.step == "pointwise":
            kernel = self._quantized(layer.pointwise_kernel, (layer.pointwise_kernel.ndim - 1,))
            return kernels.pointwise_conv(x, kernel, layer.data_format, bias=layer.bias)
        if self.step == "conv":
            kernel = self._quantized(layer.kernel, (layer.kernel.ndim - 1,))
            x = ops.conv(x, kernel, layer.strides, layer.padding, layer.data_format, layer.dilation_rate)
            return x if layer.bias is None else kernels.add_bias(x, layer.bias, layer.data_format)
        x = ops.matmul(x, self._quantized(layer.kernel, (1,)))  # dense
        return x if layer.bias is None else x + layer.bias


def _steps(layer):
    """`[(step, activation after it)]` of a supported weighted layer; raises for others."""
    if isinstance(layer, BaseDepthwiseSeparableConv) and layer.depthwise_norm is None and layer.norm is None:
        return [("depthwise", layer.depthwise_activation), ("pointwise", layer.activation)]
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        return [("depthwise", None), ("pointwise", layer.activation)]
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        return [("depthwise", layer.activation)]
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)) and layer.groups == 1:
        return [("conv", layer.activation)]
    if isinstance(layer, keras.layers.Dense) and len(layer.kernel.shape) == 2:
        return [("dense", layer.activation)]
    raise ValueError(
        "Quantization-aware fine-tuning supports convolutions (regular, depthwise, separable) and Dense layers "
        f"after BatchNorm folding. Received: layer {layer.name!r} of type {type(layer).__name__}"
    )


def _activation_name(activation):
    return getattr(activation, "__name__", None) if activation is not None else None


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        return layer.negative_slope == 0 and layer.threshold == 0
    return isinstance(layer, keras.layers.Activation) and _activation_name(layer.activation) in _RELU_NAMES


def _fed_to_relu_only(model):
    """Ids of layers whose one output goes to one ReLU only: the runtimes round after that ReLU.

    Read from `model`'s own nodes: layers without weights are shared with the model
    folding started from, so their `_outbound_nodes` list that model's calls as well.
    """
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    calls, consumers = {}, {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        for parent in node.parent_nodes:
            consumers.setdefault(id(parent.operation), []).append(node.operation)
    return {
        key
        for key, users in consumers.items()
        if calls.get(key) == 1 and len(users) == 1 and calls[id(users[0])] == 1 and _is_relu(users[0])
    }


class SimulatedInt8:
    """A folded float model and its int8 simulation sharing the same variables.

    `float_model`: what is exported (fine-tuned in place). `simulated`: the same network
    with int8 rounding, outputs as the original's. `logits`: the simulation up to the
    (rounded) input of the final softmax, what fine-tuning fits; the simulation itself
    when the model ends without a softmax.
    """

    def __init__(self, model, int16_activations=0, float_ops=0):
        self.int16_activations = _validation.non_negative_int(int16_activations, "int16_activations")
        self.float_ops = _validation.non_negative_int(float_ops, "float_ops")
        if int16_activations and float_ops:
            raise ValueError(
                "int16_activations (ONNX) and float_ops (LiteRT) belong to different formats. "
                f"Received: int16_activations={int16_activations}, float_ops={float_ops}"
            )
        self.float_model, self.folded_batch_norm = fold_batch_norm(model)
        if len(self.float_model.inputs) != 1 or len(self.float_model.outputs) != 1:
            raise ValueError(
                "Quantization-aware fine-tuning needs a model with one input and one output. Received: "
                f"{len(self.float_model.inputs)} inputs, {len(self.float_model.outputs)} outputs"
            )
        self.quantizers = []
        self._build()

    def _quantizer(self, x, fixed_range=None):
        wide = len(self.quantizers) < self.int16_activations
        levels = WIDE_LEVELS if wide else ACTIVATION_LEVELS
        quantizer = ActivationQuantizer(fixed_range, levels, name=f"int8_range_{len(self.quantizers)}")
        self.quantizers.append(quantizer)
        return quantizer(x)

    def _build(self):
        model = self.float_model
        relu_fed = _fed_to_relu_only(model)
        origin, rounded_copies, logits = {}, {}, []
        # Tensors left in float32 (the model input, float32 operators' outputs): rounded where an int8 step reads them.
        unrounded = set()
        steps_made = 0
        for layer in model.layers:
            if layer.weights and not isinstance(layer, keras.layers.InputLayer):
                _steps(layer)  # refuse unsupported layers before building anything

        def clone(layer):
            new = layer if layer.weights else layer.__class__.from_config(layer.get_config())
            origin[id(new)] = layer
            return new

        def int8_input(tensor):
            """`tensor` as an int8 step reads it: rounded once, however many steps read it."""
            history = getattr(tensor, "_keras_history", None)
            is_input = history is not None and isinstance(history.operation, keras.layers.InputLayer)
            if not (is_input or id(tensor) in unrounded):
                return tensor
            if id(tensor) not in rounded_copies:
                rounded_copies[id(tensor)] = self._quantizer(tensor)
            return rounded_copies[id(tensor)]

        def call(layer, *args, **kwargs):
            nonlocal steps_made
            old = origin[id(layer)]
            if not old.weights:
                inputs = keras.tree.flatten(args)
                if inputs and all(id(t) in unrounded for t in inputs) and (
                    steps_made < self.float_ops or _is_relu(old)
                ):  # before a float32 step, or a ReLU fused into the float32 operator before it
                    y = layer(*args, **kwargs)
                    unrounded.add(id(y))
                    return y
                y = layer(*keras.tree.map_structure(int8_input, args), **kwargs)
                if isinstance(old, _SAME_GRID) or id(old) in relu_fed:
                    return y
                return self._quantizer(y)
            x = args[0]
            steps = _steps(old)
            for i, (step, activation) in enumerate(steps):
                int8_step = steps_made >= self.float_ops
                steps_made += 1
                if int8_step:
                    x = int8_input(x)
                x = _QuantizedStep(old, step, int8_step)(x)
                name = _activation_name(activation)
                # A softmax or sigmoid is an operator of its own: int8 unless a float32 step follows.
                int8_activation = name not in (None, "linear", *_RELU_NAMES) and steps_made >= self.float_ops
                if int8_activation:
                    x = self._quantizer(x)  # the runtimes round before a softmax or sigmoid, too
                    if name == "softmax":
                        logits.append(x)
                if name not in (None, "linear"):
                    x = keras.layers.Activation(activation)(x)
                if not (int8_step or int8_activation):
                    unrounded.add(id(x))
                elif not (i == len(steps) - 1 and id(old) in relu_fed):
                    x = self._quantizer(x, (0.0, 1.0) if name in ("softmax", "sigmoid") else None)
            return x

        self.simulated = keras.models.clone_model(model, clone_function=clone, call_function=call)
        output = self.simulated.outputs[0]
        self.logits = keras.Model(self.simulated.inputs, logits[-1] if logits else output)
        self.ends_in_softmax = bool(logits)
        rounded = [q._inbound_nodes[0].input_tensors[0] for q in self.quantizers]
        self._ranges = keras.Model(self.simulated.inputs, [ops.stack([ops.min(t), ops.max(t)]) for t in rounded])
        self._rounded = keras.Model(self.simulated.inputs, rounded)

    def set_enabled(self, enabled):
        """Rounding on (the int8 simulation) or off (the float network, up to float32 rounding)."""
        for layer in self.simulated.layers:
            if isinstance(layer, (ActivationQuantizer, _QuantizedStep)):
                layer.enabled.assign(1.0 if enabled else 0.0)

    def calibrate(self, images, batch_size=32, method="minmax", percentile=PERCENTILE):
        """Sets every range from what the float network reaches on `images`.

        `method`: "minmax" (the [min, max]) or "percentile": [-t, t] within [min, max], `t`
        the `percentile` of the absolute values over all of `images`, read from a
        histogram as ONNX Runtime reads it (`sepconv.export._ranges`).
        """
        check_range_method(method, percentile, name="method")
        self.set_enabled(False)
        low = np.full(len(self.quantizers), np.inf)
        high = np.full(len(self.quantizers), -np.inf)
        for start in range(0, len(images), batch_size):
            values = self._ranges.predict_on_batch(images[start : start + batch_size])
            values = np.stack([keras.ops.convert_to_numpy(v) for v in values])
            low, high = np.minimum(low, values[:, 0]), np.maximum(high, values[:, 1])
        if method == "percentile":
            threshold = self._percentiles(images, batch_size, np.maximum(-low, high), percentile)
            low, high = clipped(low, high, threshold)
        for quantizer, minimum, maximum in zip(self.quantizers, low, high):
            minimum, maximum = quantizer.fixed_range or (minimum, maximum)  # probabilities: [0, 1] as the runtimes
            quantizer.minimum.assign(minimum)
            quantizer.maximum.assign(maximum)
        self.set_enabled(True)

    def _percentiles(self, images, batch_size, largest, percentile):
        """Per rounded tensor: the `percentile` of |x| on `images`."""
        histograms = AbsoluteHistograms(largest)
        for start in range(0, len(images), batch_size):
            tensors = self._rounded.predict_on_batch(images[start : start + batch_size])
            for i, tensor in enumerate(tensors):
                histograms.add(i, keras.ops.convert_to_numpy(tensor))
        return histograms.thresholds(percentile)

    def finetune(self, images, teacher_outputs, *, epochs=1, batch_size=128, learning_rate=1e-3, verbose="auto"):
        """Fits the simulation to the float model's output distribution on `images`; returns Keras' history.

        `teacher_outputs`: the original model's outputs on `images` (probabilities when it
        ends in a softmax, else logits). SGD with Nesterov momentum 0.9, the learning rate
        decaying from `learning_rate` to 0 on a cosine over all steps (Loshchilov & Hutter 2017).
        Ranges are recalibrated afterwards with `calibrate`, by the caller.
        """
        targets = np.asarray(teacher_outputs, np.float32)
        if not self.ends_in_softmax:
            targets = keras.ops.convert_to_numpy(keras.ops.softmax(targets, axis=-1))
        steps = epochs * -(-len(images) // batch_size)
        schedule = warmup_cosine(learning_rate, steps)
        self.logits.compile(
            optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        )
        self.set_enabled(True)
        return self.logits.fit(images, targets, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
