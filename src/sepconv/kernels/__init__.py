"""Depthwise and pointwise compute paths behind one selection point."""

from sepconv.kernels._portable import add_bias, depthwise_native, depthwise_shifted, output_length
from sepconv.kernels._select import (
    available_implementations,
    depthwise_conv,
    get_depthwise_implementation,
    pointwise_conv,
    set_depthwise_implementation,
)

__all__ = [
    "add_bias",
    "available_implementations",
    "depthwise_conv",
    "depthwise_native",
    "depthwise_shifted",
    "get_depthwise_implementation",
    "output_length",
    "pointwise_conv",
    "set_depthwise_implementation",
]
