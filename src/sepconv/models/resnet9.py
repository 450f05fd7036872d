"""ResNet-9, the fast-training CIFAR-10 layout, with depthwise separable layers.

The layout of Page's DAWNBench entry ("How to train your ResNet", 2018), built for
accuracy per training step rather than per parameter: a stem, then three stages
that each widen (64-128-256-512) and halve the image with max-pooling, the first
and last followed by a residual pair. Only the stem and the first layer run at
32x32 (ResNet-18's layout runs five), so most of the work is pointwise matrix
products on small images, which CPU matrix units (and bfloat16) run fast, and
few depthwise steps, bound by memory, see the full image.
"""

import keras

from sepconv import _validation
from sepconv.layers import presets
from sepconv.models._blocks import conv_bn, predictions
from sepconv.models._registry import register_model

STAGES = ((128, True), (256, False), (512, True))  # (filters, followed by a residual pair)


def _conv(x, filters, conv, name):
    if conv == "regular":
        return conv_bn(x, filters, 3, name)
    return presets.mobilenet(filters, 3, padding="same", name=f"{name}_sep")(x)


def dsc_resnet9(width=1.0, stem=64, conv="separable", input_shape=(32, 32, 3), num_classes=10, name=None):
    """ResNet-9 layout; each 3x3 convolution after the stem is DW-BN-ReLU-PW-BN-ReLU.

    Stem: a regular 3x3 convolution (`stem` x `width` filters), BN, ReLU. Each stage:
    a layer to its width, 2x2 max-pooling, and for the first and last stage a residual
    pair `x + layer(layer(x))`. Then global max-pooling, a scale of 1/8 and the softmax
    classifier.
    `width` scales every channel count; `conv="regular"` builds the same network with
    regular 3x3 convolutions (conv-BN-ReLU), the baseline it is compared with.
    """
    _validation.choice(conv, ("separable", "regular"), "conv")
    _validation.number(width, "width", low=0.0, low_open=True)
    _validation.positive_int(stem, "stem")
    inputs = keras.Input(input_shape, name="image")
    x = conv_bn(inputs, int(stem * width), 3, "stem")
    for stage, (filters, residual) in enumerate(STAGES, start=1):
        filters = int(filters * width)
        x = _conv(x, filters, conv, f"stage{stage}")
        x = keras.layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
        if residual:
            branch = _conv(x, filters, conv, f"stage{stage}_res1")
            branch = _conv(branch, filters, conv, f"stage{stage}_res2")
            x = keras.layers.Add(name=f"stage{stage}_add")([x, branch])
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    # Maxima of unnormalized residual sums grow large in training: unscaled, the first
    # fast-recipe epoch ended at loss 4.7, above log 10 (confidently wrong). Page scales by 1/8.
    x = keras.layers.Rescaling(0.125, name="pool_scale")(x)
    outputs = predictions(x, num_classes)
    return keras.Model(inputs, outputs, name=name or ("dsc_resnet9" if conv == "separable" else "resnet9"))


register_model("dsc_resnet9", dsc_resnet9)
register_model("resnet9", dsc_resnet9, conv="regular")
# Half width: 201,418 parameters, under ResNet-20's 270k. Every channel count stays a multiple of 32:
# in bfloat16 on an AMX CPU, width 0.5625 (72-144-288) trains 4x slower (docs/results/bench-channels).
register_model("dsc_resnet9_half", dsc_resnet9, width=0.5)
register_model("resnet9_half", dsc_resnet9, width=0.5, conv="regular")
