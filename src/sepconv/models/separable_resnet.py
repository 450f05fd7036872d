"""A residual network with one depthwise separable layer per block, for CIFAR-10.

Three stages at 32x32, 16x16 and 8x8 of `depth` residual blocks each, at `channels`,
2x`channels` and 4x`channels` channels. A block is `relu(x + DW-BN-ReLU-PW-BN(x))`: one
separable layer, so a block costs one pointwise product where `dsc_resnet`'s costs
two, and the depth goes to the 32x32 stage, where CIFAR-10's detail is. Between
stages one separable layer (DW-BN-ReLU-PW-BN-ReLU, stride 2 in the depthwise step)
doubles the width in place of a projection shortcut. The depthwise kernels are 5x5
by default: 25 multiply-adds per pixel and channel against `channels` or more for the
pointwise step, a wide view for few parameters.

The layout follows SeparableResNet (github.com/pierandom/separable-resnet), which
reports 92.3 % on CIFAR-10 after 30 epochs at 0.45M parameters with TrivialAugment;
here with post-activation blocks, ReLU and a 3x3 stem so the fused BN-ReLU steps apply.
"""

import keras

from sepconv import _validation
from sepconv.layers.separable import DepthwiseSeparableConv2D
from sepconv.models._blocks import conv_bn, predictions
from sepconv.models._registry import register_model


def _separable(x, filters, kernel_size, name, strides=1, activation="relu"):
    return DepthwiseSeparableConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        depthwise_normalization="batch",
        depthwise_activation="relu",
        normalization="batch",
        activation=activation,
        name=name,
    )(x)


def _regular(x, filters, kernel_size, name, strides=1, activation="relu"):
    return conv_bn(x, filters, kernel_size, name, strides=strides, activation=activation is not None)


def separable_resnet(
    channels=48, depth=3, kernel_size=5, conv="separable", input_shape=(32, 32, 3), num_classes=10, name=None
):
    """3x3 stem, three stages of `depth` one-layer residual blocks at `channels`-2x-4x, pool, dense.

    `channels` is the first stage's channel count, not a multiplier like `dsc_resnet`'s `width`.
    `conv="regular"` puts a regular `kernel_size` convolution with BN wherever a
    separable layer is: the baseline a separable one is compared with.
    """
    _validation.choice(conv, ("separable", "regular"), "conv")
    _validation.positive_int(channels, "channels")
    _validation.positive_int(depth, "depth")
    _validation.positive_int(kernel_size, "kernel_size")
    layer = _separable if conv == "separable" else _regular
    inputs = keras.Input(input_shape, name="image")
    x = conv_bn(inputs, channels, 3, "stem")
    for stage in range(1, 4):
        filters = channels * 2 ** (stage - 1)
        if stage > 1:
            x = layer(x, filters, kernel_size, f"stage{stage}_down", strides=2)
        for block in range(1, depth + 1):
            branch = layer(x, filters, kernel_size, f"stage{stage}_block{block}", activation=None)
            x = keras.layers.Add(name=f"stage{stage}_block{block}_add")([x, branch])
            x = keras.layers.ReLU(name=f"stage{stage}_block{block}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = predictions(x, num_classes)
    return keras.Model(inputs, outputs, name=name or ("separable_resnet" if conv == "separable" else "regular_resnet"))


register_model("separable_resnet", separable_resnet)
