"""`DepthwiseConv3D`: the 3-D depthwise convolution Keras lacks."""

import keras

from sepconv import _validation, kernels
from sepconv.layers._base import depthwise_initializer_default, depthwise_output_shape


@keras.saving.register_keras_serializable(package="sepconv")
class DepthwiseConv3D(keras.layers.Layer):
    """Per-channel 3-D convolution with `depth_multiplier` filters per channel.

    Same arguments and weight layout as `keras.layers.DepthwiseConv2D`:
    kernel shape `kernel_size + (channels, depth_multiplier)`, output channel
    `c * depth_multiplier + m` from input channel `c`. The default depthwise
    initializer is `depthwise_initializer_default()` (see there why).
    """

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        depthwise_initializer=None,
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.kernel_size = _validation.int_tuple(kernel_size, 3, "kernel_size")
        self.strides = _validation.int_tuple(strides, 3, "strides")
        self.padding = _validation.padding(padding, 3)
        self.depth_multiplier = _validation.positive_int(depth_multiplier, "depth_multiplier")
        self.data_format = _validation.data_format(data_format)
        self.dilation_rate = _validation.int_tuple(dilation_rate, 3, "dilation_rate")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = keras.initializers.get(depthwise_initializer or depthwise_initializer_default())
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.depthwise_regularizer = keras.regularizers.get(depthwise_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.depthwise_constraint = keras.constraints.get(depthwise_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=5)

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 5:
            raise ValueError(
                f"DepthwiseConv3D expects inputs of rank 5 (batch, 3 spatial, channels). "
                f"Received: input_shape={input_shape}"
            )
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"The channel dimension of the inputs to DepthwiseConv3D must be defined. "
                f"Received: input_shape={input_shape}"
            )
        self.input_spec = keras.layers.InputSpec(ndim=5, axes={self._channel_axis: channels})
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=self.kernel_size + (channels, self.depth_multiplier),
            initializer=self.depthwise_initializer,
            regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(channels * self.depth_multiplier,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def call(self, inputs):
        x = kernels.depthwise_conv(
            inputs, self.depthwise_kernel, self.strides, self.padding, self.data_format, self.dilation_rate
        )
        if self.bias is not None:
            x = kernels.add_bias(x, self.bias, self.data_format)
        return self.activation(x)

    def compute_output_shape(self, input_shape):
        return depthwise_output_shape(
            input_shape, self.kernel_size, self.strides, self.dilation_rate, self.padding,
            self.depth_multiplier, self.data_format,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "depth_multiplier": self.depth_multiplier,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
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
