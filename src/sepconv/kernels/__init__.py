"""Depthwise and pointwise compute paths behind one selection point.

`depthwise_conv` runs the implementation `resolve` names: forced with
`set_depthwise_implementation` / `SEPCONV_DEPTHWISE`, else chosen by "auto"
(see `sepconv.kernels._dispatch`). `implementation(name)` is the function a
name runs on the current backend.
"""

from sepconv.kernels._autotune import cache_path as autotune_cache_path
from sepconv.kernels._autotune import device_name
from sepconv.kernels._autotune import record_calls as record_depthwise_calls
from sepconv.kernels._dispatch import (
    BATCH_NORM_IMPLEMENTATIONS,
    available_implementations,
    batch_norm_inference,
    batch_norm_training,
    depthwise_conv,
    export_paths,
    get_batch_norm_implementation,
    get_depthwise_implementation,
    implementation,
    max_pool,
    pointwise_conv,
    resolve,
    set_depthwise_implementation,
    use_batch_norm_implementation,
    use_depthwise_implementation,
)
from sepconv.kernels._memory import keep_freed_memory
from sepconv.kernels._portable import add_bias, output_length

__all__ = [
    "BATCH_NORM_IMPLEMENTATIONS",
    "add_bias",
    "autotune_cache_path",
    "available_implementations",
    "batch_norm_inference",
    "batch_norm_training",
    "depthwise_conv",
    "device_name",
    "export_paths",
    "get_batch_norm_implementation",
    "get_depthwise_implementation",
    "implementation",
    "keep_freed_memory",
    "max_pool",
    "output_length",
    "pointwise_conv",
    "record_depthwise_calls",
    "resolve",
    "set_depthwise_implementation",
    "use_batch_norm_implementation",
    "use_depthwise_implementation",
]
