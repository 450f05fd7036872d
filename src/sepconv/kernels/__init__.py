"""Depthwise and pointwise compute paths behind one selection point."""

from sepconv.kernels._autotune import cache_path as autotune_cache_path
from sepconv.kernels._autotune import device_name
from sepconv.kernels._autotune import record_calls as record_depthwise_calls
from sepconv.kernels._portable import add_bias, depthwise_native, depthwise_shifted, output_length
from sepconv.kernels._select import (
    available_implementations,
    depthwise_conv,
    get_depthwise_implementation,
    implementation,
    max_pool,
    pointwise_conv,
    resolve,
    set_depthwise_implementation,
    use_depthwise_implementation,
)

__all__ = [
    "add_bias",
    "autotune_cache_path",
    "available_implementations",
    "depthwise_conv",
    "depthwise_native",
    "depthwise_shifted",
    "device_name",
    "get_depthwise_implementation",
    "implementation",
    "max_pool",
    "output_length",
    "pointwise_conv",
    "record_depthwise_calls",
    "resolve",
    "set_depthwise_implementation",
    "use_depthwise_implementation",
]
