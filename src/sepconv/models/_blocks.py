"""The convolution choices shared by the model builders."""

import keras

from sepconv import _validation
from sepconv.layers import presets

CONV_TYPES = ("regular", "separable", "keras_separable", "tutorial", "mobilenet")


def conv3x3(filters, conv, name, strides=1, activation="relu"):
    """A 3x3 'same' convolution of kind `conv` followed by `activation`.

    - regular: `keras.layers.Conv2D` with bias.
    - separable: sepconv's DSC with Keras' SeparableConv2D semantics.
    - keras_separable: `keras.layers.SeparableConv2D` itself.
    - tutorial: depthwise(bias, act) -> pointwise(bias, act).
    - mobilenet: DW-BN-act-PW-BN-act.
    """
    _validation.choice(conv, CONV_TYPES, "conv")
    kwargs = dict(strides=strides, padding="same", name=name)
    if conv == "regular":
        return keras.layers.Conv2D(filters, 3, activation=activation, **kwargs)
    if conv == "keras_separable":
        return keras.layers.SeparableConv2D(filters, 3, activation=activation, **kwargs)
    if conv == "separable":
        return presets.keras_style(filters, 3, activation=activation, **kwargs)
    return presets.from_preset(conv, filters, 3, activation=activation, **kwargs)
