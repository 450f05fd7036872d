"""A residual network built from depthwise separable layers, for CIFAR-10.

ResNet-18's layout (He et al. 2016: four stages of two residual blocks,
widths 64-128-256-512) with each 3x3 convolution replaced by a MobileNet-style
depthwise separable layer (DW-BN-ReLU-PW-BN). Roughly 1/8 of ResNet-18's
parameters; meant to reach high accuracy with the "strong" recipe.
"""

import keras

from sepconv import layers
from sepconv.layers import presets
from sepconv.models._registry import register_model

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (filters, first stride)


def _residual_block(x, filters, strides, name):
    shortcut = x
    x = presets.mobilenet(filters, 3, strides=strides, padding="same", name=f"{name}_sep1")(x)
    x = presets.xception(filters, 3, padding="same", name=f"{name}_sep2")(x)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def dsc_resnet(width=1.0, blocks_per_stage=2, input_shape=(32, 32, 3), num_classes=10, name=None):
    """ResNet-18 layout with depthwise separable convolutions; `width` scales channels."""
    if not width > 0:
        raise ValueError(f"width must be positive. Received: width={width}")
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(int(64 * width), 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, (filters, stride) in enumerate(STAGES, start=1):
        for block in range(1, blocks_per_stage + 1):
            x = _residual_block(x, int(filters * width), stride if block == 1 else 1, name=f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or "dsc_resnet")


register_model("dsc_resnet", dsc_resnet)
