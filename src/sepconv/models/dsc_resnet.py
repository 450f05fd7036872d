"""A residual network built from depthwise separable layers, for CIFAR-10.

ResNet-18's layout (He et al. 2016: four stages of two residual blocks,
widths 64-128-256-512) with each 3x3 convolution replaced by a MobileNet-style
depthwise separable layer (DW-BN-ReLU-PW-BN). Roughly 1/8 of ResNet-18's
parameters; meant to reach high accuracy with the "strong" recipe.
"""

import keras

from sepconv import _validation, layers
from sepconv.layers import presets
from sepconv.models._blocks import conv_bn, predictions
from sepconv.models._registry import register_model

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (filters, first stride)


def _residual_block(x, filters, strides, kernel_size, conv, name):
    shortcut = x
    if conv == "regular":
        x = conv_bn(x, filters, kernel_size, f"{name}_conv1", strides=strides)
        x = conv_bn(x, filters, kernel_size, f"{name}_conv2", activation=False)
    else:
        x = presets.mobilenet(filters, kernel_size, strides=strides, padding="same", name=f"{name}_sep1")(x)
        x = presets.xception(filters, kernel_size, padding="same", name=f"{name}_sep2")(x)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def dsc_resnet(
    width=1.0,
    blocks_per_stage=2,
    stages=STAGES,
    kernel_size=3,
    conv="separable",
    input_shape=(32, 32, 3),
    num_classes=10,
    name=None,
):
    """ResNet-18 layout with depthwise separable convolutions.

    `width` scales every channel count, `blocks_per_stage` is the depth multiplier
    and `stages` the `(filters, first stride)` of each stage (ResNet-18's by default).
    `kernel_size` is that of every convolution after the 3x3 stem: a depthwise 5x5
    costs 25 multiply-adds per pixel and channel against the pointwise's one per
    output channel, so a wider view is cheap where channels are many.
    `conv="regular"` builds the same network with regular convolutions (BN and ReLU
    in the same places): the baseline a separable one is compared with.
    """
    _validation.choice(conv, ("separable", "regular"), "conv")
    _validation.number(width, "width", low=0.0, low_open=True)
    _validation.positive_int(blocks_per_stage, "blocks_per_stage")
    stages = tuple(_validation.int_tuple(stage, 2, "stages") for stage in stages)
    _validation.positive_int(kernel_size, "kernel_size")
    inputs = keras.Input(input_shape, name="image")
    x = conv_bn(inputs, int(stages[0][0] * width), 3, "stem")
    for stage, (filters, stride) in enumerate(stages, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = stride if block == 1 else 1
            x = _residual_block(x, int(filters * width), strides, kernel_size, conv, name=f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = predictions(x, num_classes)
    return keras.Model(inputs, outputs, name=name or ("dsc_resnet" if conv == "separable" else "resnet"))


register_model("dsc_resnet", dsc_resnet)
# A ResNet-10 layout at half width (one block per stage): 190,922 parameters, 10.3M MACs.
register_model("dsc_resnet10", dsc_resnet, width=0.5, blocks_per_stage=1)
register_model("resnet10", dsc_resnet, width=0.5, blocks_per_stage=1, conv="regular")
# ResNet-20's CIFAR layout (He et al. 2016, Sec. 4.2: three stages of three blocks) at twice its
# width, 32-64-128, so every channel count is a multiple of 32: 150,986 parameters, 22.7M MACs.
# Seven layers run at 32x32 (ResNet-9 runs two): more depth per parameter, slower steps.
register_model("dsc_resnet20", dsc_resnet, stages=((32, 1), (64, 2), (128, 2)), blocks_per_stage=3)
