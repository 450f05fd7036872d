"""The convolution choices shared by the model builders."""

import keras

from sepconv import _validation, layers
from sepconv.layers import presets

CONV_TYPES = ("regular", "separable", "keras_separable", "tutorial", "mobilenet")


def predictions(x, num_classes):
    """The softmax classifier every model ends with, named `predictions`.

    Under a mixed dtype policy it computes in float32, as Keras' mixed-precision guide
    advises: bfloat16's 8 significant bits would round probabilities near 1 to 1.
    """
    dtype = "float32" if keras.config.dtype_policy().name.startswith("mixed") else None
    return keras.layers.Dense(num_classes, activation="softmax", dtype=dtype, name="predictions")(x)


def conv_bn(x, filters, kernel_size, name, strides=1, activation=True, max_value=None):
    """Regular convolution (no bias), BatchNorm, then ReLU (capped at `max_value`) if `activation`.

    Layers are named `{name}_conv`, `{name}_bn` and `{name}_relu`.
    """
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(max_value, name=f"{name}_relu")(x) if activation else x


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
