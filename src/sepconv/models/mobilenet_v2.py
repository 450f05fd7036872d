"""MobileNet v2 (Sandler et al. 2018, arXiv:1801.04381, Table 2) for 32x32 inputs.

Inverted residual blocks: a 1x1 expansion (BN, ReLU6), a 3x3 depthwise step (BN,
ReLU6) and a linear 1x1 projection (BN), with an identity shortcut where the
stride is 1 and the width is kept. On CIFAR-10 the stem and the first two
stride-2 stages keep stride 1 so the last feature map is 4x4 (the usual CIFAR
adaptation). `alpha` is the paper's width multiplier (widths rounded to
multiples of 8, as in the paper's code), `depth` multiplies the number of
blocks per stage, and `last_channels` is the width of the final 1x1 layer
(1280 in the paper, which alone holds 410k of the 2.2M parameters; smaller
values suit small budgets).
"""

import math

import keras

from sepconv import _validation
from sepconv.layers.separable import DepthwiseSeparableConv2D
from sepconv.models._blocks import conv_bn, predictions
from sepconv.models._registry import register_model

# (expansion t, output channels c, blocks n, first stride s), Table 2 with strides for 32x32.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 1), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value, divisor=8):
    """`value` rounded to the nearest multiple of `divisor`, never below 90% of it (the paper's code)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def inverted_residual(x, filters, expansion, strides, name):
    """1x1 expand-BN-ReLU6, then DW-BN-ReLU6-PW-BN as one separable layer; add the input if shapes allow."""
    inputs, channels = x, x.shape[-1]
    if expansion != 1:
        x = conv_bn(x, channels * expansion, 1, f"{name}_expand", max_value=6.0)
    x = DepthwiseSeparableConv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        depthwise_normalization="batch",
        depthwise_activation="relu6",
        normalization="batch",
        name=f"{name}_sep",
    )(x)
    if strides == 1 and channels == filters:
        x = keras.layers.Add(name=f"{name}_add")([inputs, x])
    return x


def mobilenet_v2(
    alpha=1.0, depth=1.0, last_channels=1280, input_shape=(32, 32, 3), num_classes=10, dropout=0.0, name=None
):
    """MobileNet v2: 3x3 conv stem, 17 inverted residual blocks (times `depth`), 1x1 conv, pool, dense."""
    _validation.number(alpha, "alpha", low=0.0, low_open=True)
    _validation.number(depth, "depth", low=0.0, low_open=True)
    _validation.positive_int(last_channels, "last_channels")
    inputs = keras.Input(input_shape, name="image")
    x = conv_bn(inputs, make_divisible(32 * alpha), 3, "stem", max_value=6.0)
    for stage, (expansion, filters, blocks, stride) in enumerate(STAGES, start=1):
        for block in range(1, max(1, math.ceil(blocks * depth)) + 1):
            strides = stride if block == 1 else 1
            x = inverted_residual(x, make_divisible(filters * alpha), expansion, strides, f"stage{stage}_block{block}")
    x = conv_bn(x, last_channels, 1, "head", max_value=6.0)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = predictions(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"mobilenet_v2_{alpha:g}")


register_model("mobilenet_v2", mobilenet_v2)
