"""MobileNet v1 (Howard et al. 2017, arXiv:1704.04861, Table 1) for 32x32 inputs.

The ImageNet network downsamples 32x; on CIFAR-10 the stem and the first
stride-2 block keep stride 1 so the last feature map is 2x2, the usual
CIFAR adaptation. `alpha` is the paper's width multiplier.
"""

import keras

from sepconv.layers import presets
from sepconv.models._blocks import conv_bn, predictions
from sepconv.models._registry import register_model

# (pointwise filters, depthwise stride) of the 13 depthwise separable blocks.
BLOCKS = (
    (64, 1), (128, 1), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


def mobilenet_v1(alpha=1.0, input_shape=(32, 32, 3), num_classes=10, dropout=0.0, name=None):
    """MobileNet v1: a 3x3 conv stem, 13 DW-BN-ReLU-PW-BN-ReLU blocks, pool, dense."""
    if not alpha > 0:
        raise ValueError(f"alpha must be positive. Received: alpha={alpha}")

    def width(filters):
        return max(8, int(filters * alpha))

    inputs = keras.Input(input_shape, name="image")
    x = conv_bn(inputs, width(32), 3, "stem")
    for index, (filters, stride) in enumerate(BLOCKS, start=1):
        x = presets.mobilenet(width(filters), 3, strides=stride, padding="same", name=f"block{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = predictions(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"mobilenet_v1_{alpha:g}")


register_model("mobilenet_v1", mobilenet_v1)
