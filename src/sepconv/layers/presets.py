"""Named arrangements of the depthwise separable layer.

Where do bias, normalization and activation go? Each function returns a
`DepthwiseSeparableConv2D` configured as one well-known design; for 3->64
channels with a 3x3 kernel (no BN) the parameter counts are:

| preset    | layout                                   | params |
|-----------|------------------------------------------|--------|
| keras     | DW -> PW + bias -> act (SeparableConv2D)  | 283    |
| tutorial  | DW + bias -> act -> PW + bias -> act      | 286    |
| xception  | DW -> PW -> BN (no act between)          | 475 (27 + 192 + 4*64 BN) |
| mobilenet | DW -> BN -> ReLU -> PW -> BN -> ReLU      | 487 (27 + 192 + 4*3 + 4*64 BN) |

BN layers hold 4 numbers per channel (gamma, beta and the two moving
statistics, the last two non-trainable).
"""

from sepconv import _validation
from sepconv.layers.separable import DepthwiseSeparableConv2D


def keras_style(filters, kernel_size, activation=None, **kwargs):
    """Keras' `SeparableConv2D`: no depthwise bias, one bias after pointwise."""
    return DepthwiseSeparableConv2D(filters, kernel_size, activation=activation, **kwargs)


def tutorial(filters, kernel_size, activation="relu", **kwargs):
    """The tutorial's layer: DepthwiseConv2D(bias, act) then Conv2D 1x1(bias, act)."""
    return DepthwiseSeparableConv2D(
        filters,
        kernel_size,
        depthwise_use_bias=True,
        depthwise_activation=activation,
        activation=activation,
        **kwargs,
    )


def mobilenet(filters, kernel_size, activation="relu", **kwargs):
    """MobileNet v1 block (Howard et al. 2017, Fig. 3): DW-BN-act-PW-BN-act."""
    return DepthwiseSeparableConv2D(
        filters,
        kernel_size,
        use_bias=False,
        depthwise_normalization="batch",
        depthwise_activation=activation,
        normalization="batch",
        activation=activation,
        **kwargs,
    )


def xception(filters, kernel_size, activation=None, **kwargs):
    """Xception's separable conv (Chollet 2017): no activation between, BN after."""
    return DepthwiseSeparableConv2D(
        filters, kernel_size, use_bias=False, normalization="batch", activation=activation, **kwargs
    )


_PRESETS = {"keras": keras_style, "tutorial": tutorial, "mobilenet": mobilenet, "xception": xception}


def preset_names():
    return tuple(_PRESETS)


def from_preset(preset, filters, kernel_size, **kwargs):
    """Build the layer arrangement `preset` (one of `preset_names()`)."""
    _validation.choice(preset, tuple(_PRESETS), "preset")
    return _PRESETS[preset](filters, kernel_size, **kwargs)
