"""The tutorial's VGG-block CIFAR-10 classifier.

Three VGG blocks (64x2, 128x2, 256x2 3x3 'same' convolutions + ReLU, each
followed by 2x2 max-pooling), flatten, dense 10 softmax. With 32x32x3 inputs:
1,186,378 parameters with regular convolutions, 174,821 with separable ones.

`vgg_keras` and `vgg_keras_separable` are built from Keras' own layers only
(convolutions and pooling): the tutorial's models exactly, the baseline that
`sepconv bench model` measures sepconv's layers against.
"""

import keras

from sepconv import _validation, layers
from sepconv.models._blocks import conv3x3, predictions
from sepconv.models._registry import register_model

BLOCKS = ((64, 2), (128, 2), (256, 2))  # (filters, convolutions) per block


POOLS = {"sepconv": layers.MaxPooling2D, "keras": keras.layers.MaxPooling2D}


def vgg(conv="regular", pool="sepconv", input_shape=(32, 32, 3), num_classes=10, blocks=BLOCKS, name=None):
    """Build the tutorial VGG with convolutions of kind `conv` (see `CONV_TYPES`).

    `pool`: "sepconv" (`sepconv.layers.MaxPooling2D`, layout-preserving on
    PyTorch) or "keras" (`keras.layers.MaxPooling2D`); same results.
    """
    pooling = POOLS[_validation.choice(pool, tuple(POOLS), "pool")]
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for block, (filters, count) in enumerate(blocks, start=1):
        for index in range(1, count + 1):
            x = conv3x3(filters, conv, name=f"block{block}_conv{index}")(x)
        x = pooling(2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = predictions(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"vgg_{conv}")


register_model("vgg", vgg, conv="regular")
register_model("vgg_separable", vgg, conv="separable")
register_model("vgg_keras", vgg, conv="regular", pool="keras")
register_model("vgg_keras_separable", vgg, conv="keras_separable", pool="keras")
register_model("vgg_tutorial", vgg, conv="tutorial")
register_model("vgg_mobilenet", vgg, conv="mobilenet")
