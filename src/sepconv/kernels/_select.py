"""The one place that decides how a depthwise step is computed.

Layers call `depthwise_conv(...)` and `pointwise_conv(...)`; this module picks
the computation for the current backend, device and shape. Choose explicitly
with `set_depthwise_implementation(name)` or the `SEPCONV_DEPTHWISE`
environment variable; "auto" (the default) applies, in order:

1. a choice measured on this machine for this exact call, if
   `sepconv bench tune` stored one (see `sepconv.kernels._autotune`);
2. `_auto_rule`, which only departs from "native" where `sepconv bench`
   measured a gain.

Each name is one formulation; where a backend has a faster way to run that
same formulation, the name uses it:

- "native": the backend's own depthwise (grouped) convolution. On PyTorch,
  `torch.nn.functional.conv*d(groups=C)` called directly on the tensor's
  memory layout (`_torch.py`); elsewhere `keras.ops.depthwise_conv`.
- "shifted": one multiply-add per kernel tap over shifted slices. On JAX with
  a hand-written gradient (`_jax.py`); elsewhere plain `keras.ops`.

`max_pool(...)` is the same idea for the pooling between separable blocks:
on PyTorch it keeps channels_last tensors in their layout (`_torch.py`).
"""

import contextlib
import functools
import os

import keras

from sepconv import _validation
from sepconv.kernels import _autotune, _portable

_NAMES = ("native", "shifted")
_setting = None  # None: read SEPCONV_DEPTHWISE, default "auto"


def available_implementations():
    """Names accepted by `set_depthwise_implementation`."""
    return ("auto",) + _NAMES


def set_depthwise_implementation(name):
    """Force one depthwise implementation for every layer ("auto" to restore)."""
    global _setting
    _setting = _validation.choice(name, available_implementations(), "name")


@contextlib.contextmanager
def use_depthwise_implementation(name):
    """`set_depthwise_implementation(name)` for the duration of a `with` block."""
    global _setting
    previous = _setting
    set_depthwise_implementation(name)
    try:
        yield
    finally:
        _setting = previous


def get_depthwise_implementation():
    if _setting is not None:
        return _setting
    name = os.environ.get("SEPCONV_DEPTHWISE", "auto")
    return _validation.choice(name, available_implementations(), "SEPCONV_DEPTHWISE")


def implementation(name):
    """The depthwise function registered as `name` on the current backend."""
    _validation.choice(name, _NAMES, "name")
    backend = keras.backend.backend()
    if name == "native" and backend == "torch":
        from sepconv.kernels import _torch

        return _torch.depthwise_native
    if name == "shifted" and backend == "jax":
        from sepconv.kernels import _jax

        return _jax.depthwise_shifted
    return _portable.depthwise_native if name == "native" else _portable.depthwise_shifted


def _on_cpu(x):
    """Whether `x` lives on (or, traced, will run on) the CPU."""
    backend = keras.backend.backend()
    if backend == "torch":
        device = getattr(x, "device", None)
        if device is not None and device.type != "meta":
            return device.type == "cpu"
        import torch

        return not torch.cuda.is_available()
    return _default_device_is_cpu()


@functools.cache
def _default_device_is_cpu():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() == "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.config.list_physical_devices("GPU")
    return True


def _auto_rule(x, kernel, strides, dilation_rate):
    """Rule-based choice; keep it conservative: native unless measured faster.

    Measured with `sepconv bench layer` / `sepconv bench tune` (forward and
    backward) on CPU; on accelerators everything stays native (unmeasured):

    - JAX: XLA:CPU runs grouped convolutions, and above all their kernel
      gradient, as slow generic loops; the shifted multiply-adds fuse into
      vectorized loops: 10-300x faster at every rank, stride, multiplier,
      dtype and data format tried.
    - TensorFlow, 3-D: Keras has no 3-D depthwise op and TensorFlow's grouped
      `Conv3D` is slow on CPU: shifted is 2.5-7x faster. 1-D and 2-D: the
      native depthwise kernels win by 10x or more.
    - PyTorch, float16/bfloat16: torch's CPU depthwise kernels have no fast
      16-bit path: shifted is 1.4-12x faster. float32: native wins by 4-15x.
    """
    if not all(size is not None for size in x.shape[1:]) or not _on_cpu(x):
        return "native"
    backend = keras.backend.backend()
    if backend == "jax":
        return "shifted"
    if backend == "tensorflow" and len(strides) == 3:
        return "shifted"
    if backend == "torch" and keras.backend.standardize_dtype(x.dtype) in ("float16", "bfloat16"):
        return "shifted"
    return "native"


def _call_fields(x, kernel, strides, padding, data_format, dilation_rate):
    """The arguments that identify a depthwise call (shapes may hold None)."""
    return dict(
        input_shape=tuple(n if isinstance(n, int) else None for n in x.shape),
        kernel_shape=tuple(kernel.shape),
        strides=tuple(strides),
        padding=padding,
        data_format=data_format,
        dilation_rate=tuple(dilation_rate),
        dtype=keras.backend.standardize_dtype(x.dtype),
    )


def resolve(x, kernel, strides, padding, data_format, dilation_rate):
    """The implementation name a depthwise call with these arguments uses."""
    return _resolve(_call_fields(x, kernel, strides, padding, data_format, dilation_rate), x, kernel)


def _resolve(call, x, kernel):
    name = get_depthwise_implementation()
    if name != "auto":
        return name
    if None not in call["input_shape"]:
        stored = _autotune.lookup(_autotune.cache_key(**call))
        if stored in _NAMES:
            return stored
    return _auto_rule(x, kernel, call["strides"], call["dilation_rate"])


def depthwise_conv(x, kernel, strides, padding, data_format, dilation_rate):
    """Depthwise convolution with `kernel` of shape `kernel_size + (C, M)`.

    `padding` is "valid" or "same"; output channels are channel-major
    (`c * M + m`), as in Keras' DepthwiseConv and SeparableConv layers.
    Under `jit` (JAX, `tf.function`) the choice is made when the function is
    traced: set the implementation before a model's first call.
    """
    call = _call_fields(x, kernel, strides, padding, data_format, dilation_rate)
    name = _resolve(call, x, kernel)
    _autotune.record({**call, "implementation": name})
    return implementation(name)(x, kernel, strides, padding, data_format, dilation_rate)


def pointwise_conv(x, kernel, data_format, bias=None):
    """1x1 convolution with `kernel` of shape `(1,) * rank + (C, F)`, plus `bias` if given.

    A matmul over the channel axis (as fast as or faster than a 1x1
    convolution on every backend; on JAX several times faster in backward).
    On PyTorch a bias is added inside the GEMM (`addmm`); elsewhere the
    compiler (XLA, Grappler) fuses the bias add into its consumer.
    """
    if keras.backend.backend() == "torch":
        from sepconv.kernels import _torch

        return _torch.pointwise(x, kernel, data_format, bias)
    return _portable.pointwise(x, kernel, data_format, bias)


def max_pool(x, pool_size, strides=None, padding="valid", data_format=None):
    """`keras.ops.max_pool` with PyTorch's layout-preserving path where it applies.

    Same arguments and results on every backend (`tests/test_pooling.py`);
    only PyTorch has a faster path (see `_torch.max_pool`).
    """
    rank = len(x.shape) - 2
    pool_size = _validation.int_tuple(pool_size, rank, "pool_size")
    strides = pool_size if strides is None else _validation.int_tuple(strides, rank, "strides")
    padding = _validation.choice(str(padding).lower(), ("valid", "same"), "padding")
    data_format = _validation.data_format(data_format)
    if keras.backend.backend() == "torch":
        from sepconv.kernels import _torch

        y = _torch.max_pool(x, tuple(pool_size), tuple(strides), padding, data_format)
        if y is not None:
            return y
    return keras.ops.max_pool(x, pool_size, strides=strides, padding=padding, data_format=data_format)
