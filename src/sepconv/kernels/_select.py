"""The one place that decides how a depthwise step is computed.

Layers call `depthwise_conv(...)`; this module picks an implementation for the
current backend, device and shape. Choose explicitly with
`set_depthwise_implementation(name)` or the `SEPCONV_DEPTHWISE` environment
variable; "auto" applies `_auto_rule`.
"""

import os

import keras

from sepconv import _validation
from sepconv.kernels import _portable

_IMPLEMENTATIONS = {
    "native": _portable.depthwise_native,
    "shifted": _portable.depthwise_shifted,
}
_setting = None  # None: read SEPCONV_DEPTHWISE, default "auto"


def available_implementations():
    """Names accepted by `set_depthwise_implementation`."""
    return ("auto",) + tuple(_IMPLEMENTATIONS)


def set_depthwise_implementation(name):
    """Force one depthwise implementation for every layer ("auto" to restore)."""
    global _setting
    _setting = _validation.choice(name, available_implementations(), "name")


def get_depthwise_implementation():
    if _setting is not None:
        return _setting
    name = os.environ.get("SEPCONV_DEPTHWISE", "auto")
    return _validation.choice(name, available_implementations(), "SEPCONV_DEPTHWISE")


def _auto_rule(x, kernel, strides, dilation_rate):
    """Rule-based choice; keep it conservative: native unless measured faster."""
    spatial_static = all(size is not None for size in x.shape[1:])
    if keras.backend.backend() == "jax" and spatial_static and len(strides) == 2:
        # XLA:CPU's grouped convolution is slow; shifted multiply-adds fuse.
        import jax

        if jax.default_backend() == "cpu":
            return "shifted"
    return "native"


def resolve(x, kernel, strides, dilation_rate):
    name = get_depthwise_implementation()
    return _auto_rule(x, kernel, strides, dilation_rate) if name == "auto" else name


def depthwise_conv(x, kernel, strides, padding, data_format, dilation_rate):
    """Depthwise convolution with `kernel` of shape `kernel_size + (C, M)`.

    `padding` is "valid" or "same"; output channels are channel-major
    (`c * M + m`), as in Keras' DepthwiseConv and SeparableConv layers.
    """
    name = resolve(x, kernel, strides, dilation_rate)
    return _IMPLEMENTATIONS[name](x, kernel, strides, padding, data_format, dilation_rate)


def pointwise_conv(x, kernel, data_format):
    return _portable.pointwise(x, kernel, data_format)
