"""`DepthwiseConv3D`: the 3-D depthwise convolution Keras lacks."""

import keras

from sepconv import kernels
from sepconv.layers._base import DepthwiseBase


@keras.saving.register_keras_serializable(package="sepconv")
class DepthwiseConv3D(DepthwiseBase):
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
        super().__init__(
            3, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier,
            depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer, activity_regularizer,
            depthwise_constraint, bias_constraint, **kwargs,
        )
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        channels = self._build_depthwise(input_shape)
        self.bias = self._add_bias("bias", channels * self.depth_multiplier) if self.use_bias else None

    def call(self, inputs):
        x = self._depthwise(inputs)
        if self.bias is not None:
            x = kernels.add_bias(x, self.bias, self.data_format)
        return self.activation(x)

    def compute_output_shape(self, input_shape):
        return self._depthwise_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"activation": keras.activations.serialize(self.activation), "use_bias": self.use_bias})
        return config
