"""The private bases of sepconv's depthwise layers.

`DepthwiseBase` owns the depthwise step that every layer here starts with:
its arguments, kernel weight, input checks, call and output shape.
`BaseDepthwiseSeparableConv` adds the pointwise step; `DepthwiseConv3D`
(`depthwise.py`) adds a bias and an activation.

A depthwise separable convolution (Sifre 2014; Chollet 2017, Xception;
Howard et al. 2017, MobileNets) is a per-channel spatial convolution
(`depth_multiplier` filters per input channel) followed by a 1x1 pointwise
convolution that mixes channels. This layer computes

    x = depthwise(x) [+ depthwise_bias] -> depthwise_norm -> depthwise_activation
    x = pointwise(x) [+ bias]           -> norm           -> activation

Defaults reproduce Keras' `SeparableConv*D` (no depthwise bias, nothing in
between); see `sepconv.layers.presets` for the tutorial, MobileNet and
Xception arrangements. One deliberate difference: the depthwise kernel's
default initializer (see `depthwise_initializer_default`).
"""

import keras
from keras import ops

from sepconv import _validation, kernels
from sepconv.layers.normalization import BatchNormalization

_NORMALIZATIONS = (None, "batch")


def depthwise_initializer_default():
    """He-uniform scaled by the depthwise window, not by all input channels.

    Keras' `glorot_uniform` computes a depthwise kernel's fan-in as
    `k*k*channels` although each output sees only `k*k` inputs, so activations
    shrink about sqrt(channels) times per layer: the tutorial's separable VGG
    at initialization ends with outputs ~1e-6 and barely trains. Keras computes
    `fan_out = k*k*depth_multiplier` for this kernel shape, the true fan-in when
    the multiplier is 1; scale 2 (He et al. 2015) offsets the ReLU that follows
    the pointwise step. Pass `depthwise_initializer="glorot_uniform"` to get
    Keras' behaviour.
    """
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="uniform")


def _normalize_and_activate(x, norm, activation, training):
    """`activation(norm(x))`; a ReLU is handed to the BatchNormalization, which fuses it where it can."""
    if norm is not None and activation is keras.activations.relu:
        return norm(x, training=training, relu=True)
    if norm is not None:
        x = norm(x, training=training)
    return x if activation is None else activation(x)


def _normalization(kind, axis, name):
    if kind is None:
        return None
    return BatchNormalization(axis=axis, name=name)


class DepthwiseBase(keras.layers.Layer):
    """The depthwise step: `depth_multiplier` filters per input channel.

    Owns `kernel_size`, `strides`, `padding`, `data_format`, `dilation_rate`,
    `depth_multiplier`, the `depthwise_*` and `bias_*` initializer, regularizer
    and constraint, and the checks of the input shape. Subclasses build their
    other weights after `_build_depthwise` and run `_depthwise(x)` first in `call`.
    """

    def __init__(
        self,
        rank,
        kernel_size,
        strides,
        padding,
        data_format,
        dilation_rate,
        depth_multiplier,
        depthwise_initializer,
        bias_initializer,
        depthwise_regularizer,
        bias_regularizer,
        activity_regularizer,
        depthwise_constraint,
        bias_constraint,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.rank = rank
        self.kernel_size = _validation.int_tuple(kernel_size, rank, "kernel_size")
        self.strides = _validation.int_tuple(strides, rank, "strides")
        self.padding = _validation.padding(padding, rank)
        self.data_format = _validation.data_format(data_format)
        self.dilation_rate = _validation.int_tuple(dilation_rate, rank, "dilation_rate")
        self.depth_multiplier = _validation.positive_int(depth_multiplier, "depth_multiplier")
        self.depthwise_initializer = keras.initializers.get(depthwise_initializer or depthwise_initializer_default())
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.depthwise_regularizer = keras.regularizers.get(depthwise_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.depthwise_constraint = keras.constraints.get(depthwise_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(min_ndim=rank + 2)

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def _split(self, input_shape):
        """(spatial sizes, channels) of an input shape."""
        if self.data_format == "channels_last":
            return input_shape[1:-1], input_shape[-1]
        return input_shape[2:], input_shape[1]

    def _check_input_shape(self, input_shape):
        """Rank, and with padding "valid" that the window fits; returns `input_shape` as a tuple."""
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 2:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank {self.rank + 2} "
                f"(batch, {self.rank} spatial, channels). Received: input_shape={input_shape}"
            )
        if self.padding == "valid":
            self._check_window_fits(input_shape)
        return input_shape

    def _check_window_fits(self, input_shape):
        """ValueError when the "valid" window, `(kernel_size - 1) * dilation_rate + 1`, exceeds a known size.

        Without it TensorFlow returns an empty tensor and JAX and PyTorch fail
        inside the backend. "same" and "causal" padding always fit.
        """
        spatial, _ = self._split(input_shape)
        effective = tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))
        if all(n is None or n >= e for n, e in zip(spatial, effective)):
            return
        dilation = f", dilation_rate={self.dilation_rate}" if any(d > 1 for d in self.dilation_rate) else ""
        raise ValueError(
            f"Layer '{self.name}' ({type(self).__name__}): with padding='valid' the depthwise window, "
            f"(kernel_size - 1) * dilation_rate + 1 = {effective}, is larger than the input; use padding='same' "
            f"or a larger input. Received: input_shape={input_shape}, kernel_size={self.kernel_size}{dilation}"
        )

    def _build_depthwise(self, input_shape):
        """Checks `input_shape` and adds the depthwise kernel; returns the input channels."""
        input_shape = self._check_input_shape(input_shape)
        _, channels = self._split(input_shape)
        if channels is None:
            raise ValueError(
                f"The channel dimension of the inputs to {type(self).__name__} must be defined. "
                f"Received: input_shape={input_shape}"
            )
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2, axes={self._channel_axis: channels})
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=self.kernel_size + (channels, self.depth_multiplier),
            initializer=self.depthwise_initializer,
            regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint,
        )
        return channels

    def _add_bias(self, name, size):
        return self.add_weight(
            name=name,
            shape=(size,),
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def _depthwise(self, x):
        padding = self.padding
        if padding == "valid":  # a layer built for unknown sizes meets real ones here
            self._check_window_fits(tuple(x.shape))
        if padding == "causal":  # pad the past only, then "valid"
            left = (self.kernel_size[0] - 1) * self.dilation_rate[0]
            pads = [(0, 0), (left, 0), (0, 0)]
            x = ops.pad(x, pads if self.data_format == "channels_last" else [pads[0], pads[2], pads[1]])
            padding = "valid"
        return kernels.depthwise_conv(
            x, self.depthwise_kernel, self.strides, padding, self.data_format, self.dilation_rate
        )

    def _depthwise_output_shape(self, input_shape):
        """Output shape of the depthwise step ("causal" keeps the length, as "same")."""
        input_shape = self._check_input_shape(input_shape)
        spatial, channels = self._split(input_shape)
        padding = "same" if self.padding == "causal" else self.padding
        out = tuple(
            kernels.output_length(n, k, s, d, padding)
            for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)
        )
        middle = None if channels is None else channels * self.depth_multiplier
        if self.data_format == "channels_last":
            return (input_shape[0],) + out + (middle,)
        return (input_shape[0], middle) + out

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": keras.initializers.serialize(self.depthwise_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "depthwise_regularizer": keras.regularizers.serialize(self.depthwise_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
                "depthwise_constraint": keras.constraints.serialize(self.depthwise_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        return config


class BaseDepthwiseSeparableConv(DepthwiseBase):
    """Depthwise step, optional middle normalization/activation, pointwise step.

    Args:
        rank: number of spatial dimensions (1, 2 or 3).
        filters: output channels of the pointwise step.
        kernel_size: depthwise window, an int or a tuple of `rank` ints.
        strides: depthwise strides.
        padding: "valid", "same" or (rank 1 only) "causal".
        data_format: "channels_last" or "channels_first"; default
            `keras.config.image_data_format()`.
        dilation_rate: depthwise dilation.
        depth_multiplier: depthwise filters per input channel.
        activation: applied after the pointwise step (and `normalization`).
        use_bias: bias after the pointwise step.
        depthwise_use_bias: bias after the depthwise step (Keras has none).
        depthwise_activation: activation between the two steps.
        depthwise_normalization: None or "batch", between the two steps.
        normalization: None or "batch", after the pointwise step.
        depthwise_initializer: default `depthwise_initializer_default()`.
        *_initializer, *_regularizer, *_constraint: as in Keras.
    """

    def __init__(
        self,
        rank,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        depth_multiplier=1,
        activation=None,
        use_bias=True,
        depthwise_use_bias=False,
        depthwise_activation=None,
        depthwise_normalization=None,
        normalization=None,
        depthwise_initializer=None,
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        pointwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            rank, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier,
            depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer, activity_regularizer,
            depthwise_constraint, bias_constraint, **kwargs,
        )
        self.filters = _validation.positive_int(filters, "filters")
        self.use_bias = bool(use_bias)
        self.depthwise_use_bias = bool(depthwise_use_bias)
        self.depthwise_normalization = _validation.choice(
            depthwise_normalization, _NORMALIZATIONS, "depthwise_normalization"
        )
        self.normalization = _validation.choice(normalization, _NORMALIZATIONS, "normalization")
        self.activation = keras.activations.get(activation)
        self.depthwise_activation = keras.activations.get(depthwise_activation)
        self.pointwise_initializer = keras.initializers.get(pointwise_initializer)
        self.pointwise_regularizer = keras.regularizers.get(pointwise_regularizer)
        self.pointwise_constraint = keras.constraints.get(pointwise_constraint)
        self.depthwise_norm = _normalization(self.depthwise_normalization, self._channel_axis, "depthwise_norm")
        self.norm = _normalization(self.normalization, self._channel_axis, "norm")

    def build(self, input_shape):
        middle = self._build_depthwise(input_shape) * self.depth_multiplier
        self.depthwise_bias = self._add_bias("depthwise_bias", middle) if self.depthwise_use_bias else None
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel",
            shape=(1,) * self.rank + (middle, self.filters),
            initializer=self.pointwise_initializer,
            regularizer=self.pointwise_regularizer,
            constraint=self.pointwise_constraint,
        )
        self.bias = self._add_bias("bias", self.filters) if self.use_bias else None
        middle_shape = list(self._depthwise_output_shape(input_shape))
        if self.depthwise_norm is not None:
            self.depthwise_norm.build(tuple(middle_shape))
        if self.norm is not None:
            middle_shape[self._channel_axis] = self.filters
            self.norm.build(tuple(middle_shape))

    def call(self, inputs, training=None):
        x = self._depthwise(inputs)
        if self.depthwise_bias is not None:
            x = kernels.add_bias(x, self.depthwise_bias, self.data_format)
        x = _normalize_and_activate(x, self.depthwise_norm, self.depthwise_activation, training)
        x = kernels.pointwise_conv(x, self.pointwise_kernel, self.data_format, bias=self.bias)
        return _normalize_and_activate(x, self.norm, self.activation, training)

    def compute_output_shape(self, input_shape):
        shape = list(self._depthwise_output_shape(input_shape))
        shape[self._channel_axis] = self.filters
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "depthwise_use_bias": self.depthwise_use_bias,
                "depthwise_activation": keras.activations.serialize(self.depthwise_activation),
                "depthwise_normalization": self.depthwise_normalization,
                "normalization": self.normalization,
                "pointwise_initializer": keras.initializers.serialize(self.pointwise_initializer),
                "pointwise_regularizer": keras.regularizers.serialize(self.pointwise_regularizer),
                "pointwise_constraint": keras.constraints.serialize(self.pointwise_constraint),
            }
        )
        return config
