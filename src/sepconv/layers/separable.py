"""Public depthwise separable convolution layers, one per spatial rank."""

import keras

from sepconv.layers._base import BaseDepthwiseSeparableConv


@keras.saving.register_keras_serializable(package="sepconv")
class DepthwiseSeparableConv1D(BaseDepthwiseSeparableConv):
    """1-D depthwise separable convolution; padding may also be "causal".

    Input `(batch, steps, channels)` (channels_last) or
    `(batch, channels, steps)`. See `BaseDepthwiseSeparableConv` for arguments.
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(1, filters, kernel_size, **kwargs)


@keras.saving.register_keras_serializable(package="sepconv")
class DepthwiseSeparableConv2D(BaseDepthwiseSeparableConv):
    """2-D depthwise separable convolution.

    Input `(batch, height, width, channels)` (channels_last) or
    `(batch, channels, height, width)`. With default arguments it matches
    `keras.layers.SeparableConv2D` weight for weight. See
    `BaseDepthwiseSeparableConv` for arguments.
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(2, filters, kernel_size, **kwargs)


@keras.saving.register_keras_serializable(package="sepconv")
class DepthwiseSeparableConv3D(BaseDepthwiseSeparableConv):
    """3-D depthwise separable convolution (Keras has no SeparableConv3D).

    Input `(batch, depth, height, width, channels)` (channels_last) or
    `(batch, channels, depth, height, width)`.
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(3, filters, kernel_size, **kwargs)
