"""The one place that decides how a depthwise step is computed.

Layers call `depthwise_conv(...)` and `pointwise_conv(...)`; this module picks
the computation for the current backend, device and shape. Choose explicitly
with `set_depthwise_implementation(name)` or the `SEPCONV_DEPTHWISE`
environment variable; "auto" (the default) applies, in order:

1. a choice measured on this machine for this exact call, if
   `sepconv bench tune` stored one (see `sepconv.kernels._autotune`);
2. `_auto_rule`, which only departs from "native" where `sepconv bench`
   measured a gain.

"auto" is resolved once per call signature (input shape, dtype, device,
kernel shape, strides, padding, data format, dilation) and remembered for the
process: a layer pays for the choice on its first call, not on every call.
A forced name (`set_depthwise_implementation`, `SEPCONV_DEPTHWISE`) always
wins over a remembered choice; a choice stored by `sepconv bench tune` in this
process replaces the remembered ones, one stored by another process is seen
by the next process.

Each name is one formulation; where a backend has a faster way to run that
same formulation, the name uses it:

- "native": the backend's own depthwise (grouped) convolution. On PyTorch,
  `torch.nn.functional.conv*d(groups=C)` called directly on the tensor's
  memory layout (`_torch.py`); elsewhere `keras.ops.depthwise_conv`.
- "shifted": one multiply-add per kernel tap over shifted slices. On JAX with
  a hand-written gradient (`_jax.py`); elsewhere plain `keras.ops`.
- "triton": the Triton kernels of `sepconv.kernels.triton` (1-D and 2-D),
  on the torch backend with a CUDA device and triton installed (or Triton's
  CPU interpreter, `TRITON_INTERPRET=1`, which is how the tests run them).
  Force it by name; "auto" takes it only from a `sepconv bench tune`
  measurement on a CUDA machine: no rule picks it, since it has not been
  measured faster anywhere yet.

"native" and "shifted" run on every backend and device: whatever "auto"
finds, a call it cannot run there falls back to the rule, which only picks
those two.

`max_pool(...)` is the same idea for the pooling between separable blocks:
on PyTorch it keeps channels_last tensors in their layout (`_torch.py`).
`export_paths()` is the path for exported graphs (`sepconv.export`): within it every
depthwise step is the backend's depthwise op and every pointwise step a 1x1
convolution, whatever the setting, so ONNX and LiteRT get one depthwise convolution
and one 1x1 convolution per layer, operators their runtimes implement natively.

`batch_norm_training(...)` gives the training-mode batch normalization of
`sepconv.layers.BatchNormalization` one fused kernel where the backend has one
(TensorFlow's FusedBatchNormV3; on PyTorch a C kernel compiled at first use for float32
channels_last on the CPU, `_native`, else torch's batch_norm; XLA fuses JAX's itself).
"""

import contextlib
import functools
import os

import keras

from sepconv import _validation
from sepconv.kernels import _autotune, _portable

_PORTABLE = ("native", "shifted")
_NAMES = _PORTABLE + ("triton",)
_setting = None  # None: read SEPCONV_DEPTHWISE, default "auto"
_chosen = {}  # call signature -> name "auto" resolved to
_chosen_for = None  # (autotune generation, SEPCONV_CACHE_DIR) the entries of `_chosen` were resolved with
_MAX_CHOSEN = 4096  # distinct signatures remembered before starting over
_exporting = False  # within `export_paths()`


def available_implementations(rank=None):
    """Names `set_depthwise_implementation` accepts on this backend and device.

    Always "auto", "native" and "shifted"; "triton" where it runs (see the
    module docstring). With `rank`, only the names that run inputs with that
    many spatial dimensions ("triton": 1 and 2).
    """
    names = ("auto",) + _PORTABLE
    if _triton_unusable() is None and rank in (None, 1, 2):
        names += ("triton",)
    return names


def set_depthwise_implementation(name):
    """Force one depthwise implementation for every layer ("auto" to restore)."""
    global _setting
    _setting = _checked(name, "name")


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


@contextlib.contextmanager
def export_paths():
    """Within the block, layers trace to the operators export formats run natively.

    Depthwise steps use the backend's depthwise (grouped) convolution, never the
    shifted per-tap formulation or a custom kernel; pointwise steps a 1x1 convolution
    (plus bias) rather than a matmul over a reshaped tensor; pooling Keras' own op.
    Exporters map these one to one: ONNX `Conv` (group = channels) and `Conv`,
    LiteRT `DEPTHWISE_CONV_2D` and `CONV_2D`. Same results as the other paths.
    """
    global _exporting
    previous = _exporting
    _exporting = True
    try:
        yield
    finally:
        _exporting = previous


def get_depthwise_implementation():
    """The forced name, or "auto": what `set_depthwise_implementation` or `SEPCONV_DEPTHWISE` say."""
    if _setting is not None:
        return _setting
    return _from_environment(os.environ.get("SEPCONV_DEPTHWISE", "auto"))


@functools.lru_cache(maxsize=8)
def _from_environment(value):
    return _checked(value, "SEPCONV_DEPTHWISE")


def _checked(name, argument):
    """`name` if it is a registered name this backend and device can run, else a ValueError."""
    _validation.choice(name, ("auto",) + _NAMES, argument)
    if name == "triton":
        reason = _triton_unusable()
        if reason is not None:
            raise ValueError(
                "The 'triton' depthwise implementation runs on the torch backend with a CUDA device "
                "(or TRITON_INTERPRET=1) and triton installed, imported before any TensorFlow. "
                f"Received: {argument}='triton', {reason}"
            )
    return name


def _triton_unusable():
    """None where "triton" can run here; else the received state that rules it out."""
    backend = keras.backend.backend()
    if backend != "torch":
        return f"backend={backend!r}"
    from sepconv import _provenance
    from sepconv.kernels import triton

    if not triton.is_available():
        return "backend='torch', triton=None"
    if os.environ.get("TRITON_INTERPRET", "0") != "1" and _provenance.device("torch") == "CPU":
        return "backend='torch', device='CPU'"
    return None


def implementation(name):
    """The depthwise function registered as `name` on the current backend.

    Each takes `(x, kernel, strides, padding, data_format, dilation_rate)`.
    """
    _validation.choice(name, _NAMES, "name")
    if name == "triton":
        _checked(name, "name")
    return _function(name, keras.backend.backend())


@functools.cache
def _function(name, backend):
    if name == "triton":
        from sepconv.kernels import triton

        return triton.depthwise_conv_triton
    if name == "native" and backend == "torch":
        from sepconv.kernels import _torch

        return _torch.depthwise_native
    if name == "native" and backend == "tensorflow":
        from sepconv.kernels import _tensorflow

        return _tensorflow.depthwise_native
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
    backward) on CPU; on accelerators everything stays native (unmeasured),
    and "triton" is never chosen by rule:

    - JAX: XLA:CPU runs grouped convolutions, and above all their kernel
      gradient, as slow generic loops; the shifted multiply-adds fuse into
      vectorized loops: 10-300x faster at every rank, stride, multiplier,
      dtype and data format tried.
    - TensorFlow, 3-D: Keras has no 3-D depthwise op and TensorFlow's grouped
      `Conv3D` is slow on CPU: shifted is 2.5-7x faster. 1-D and 2-D: the
      native depthwise kernels win by 10x or more.
    - PyTorch: native wins by 4-15x in float32; in 16 bits it runs in float32
      (or natively, where the CPU multiplies bfloat16), 3-20x faster than the
      shifted multiply-adds (`_torch.depthwise_native`).
    """
    if not all(size is not None for size in x.shape[1:]) or not _on_cpu(x):
        return "native"
    backend = keras.backend.backend()
    if backend == "jax":
        return "shifted"
    if backend == "tensorflow" and len(strides) == 3:
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
    """The implementation name a depthwise call with these arguments uses.

    Resolved afresh (the autotune cache file is re-read if it changed), unlike
    `depthwise_conv`, which remembers what "auto" chose for each call signature.
    """
    name = get_depthwise_implementation()
    if name != "auto":
        return name
    return _auto(_call_fields(x, kernel, strides, padding, data_format, dilation_rate), x, kernel)


def _auto(call, x, kernel):
    if None not in call["input_shape"]:
        stored = _autotune.lookup(_autotune.cache_key(**call))
        if stored in _PORTABLE or (stored == "triton" and stored in available_implementations(len(call["strides"]))):
            return stored
    return _auto_rule(x, kernel, call["strides"], call["dilation_rate"])


def _signature(x, kernel, strides, padding, data_format, dilation_rate):
    device = getattr(x, "device", None) if keras.backend.backend() == "torch" else None
    return (tuple(x.shape), x.dtype, device, tuple(kernel.shape), strides, padding, data_format, dilation_rate)


def depthwise_conv(x, kernel, strides, padding, data_format, dilation_rate):
    """Depthwise convolution with `kernel` of shape `kernel_size + (C, M)`.

    `padding` is "valid" or "same"; output channels are channel-major
    (`c * M + m`), as in Keras' DepthwiseConv and SeparableConv layers.
    Under `jit` (JAX, `tf.function`) the choice is made when the function is
    traced: set the implementation before a model's first call.
    """
    global _chosen_for
    strides, dilation_rate = tuple(strides), tuple(dilation_rate)
    if _exporting:
        return _portable.depthwise_native(x, kernel, strides, padding, data_format, dilation_rate)
    name = get_depthwise_implementation()
    if name == "auto":
        cache = (_autotune.generation, os.environ.get("SEPCONV_CACHE_DIR"))
        if _chosen_for != cache or len(_chosen) >= _MAX_CHOSEN:
            _chosen.clear()
            _chosen_for = cache
        signature = _signature(x, kernel, strides, padding, data_format, dilation_rate)
        name = _chosen.get(signature)
        if name is None:
            call = _call_fields(x, kernel, strides, padding, data_format, dilation_rate)
            name = _chosen[signature] = _auto(call, x, kernel)
    if _autotune.recording():
        call = _call_fields(x, kernel, strides, padding, data_format, dilation_rate)
        _autotune.record({**call, "implementation": name})
    return _function(name, keras.backend.backend())(x, kernel, strides, padding, data_format, dilation_rate)


def pointwise_conv(x, kernel, data_format, bias=None):
    """1x1 convolution with `kernel` of shape `(1,) * rank + (C, F)`, plus `bias` if given.

    A matmul over the channel axis (as fast as or faster than a 1x1
    convolution on every backend; on JAX several times faster in backward).
    On PyTorch a bias is added inside the GEMM (`addmm`); elsewhere the
    compiler (XLA, Grappler) fuses the bias add into its consumer. Within
    `export_paths()`, a 1x1 convolution.
    """
    if _exporting:
        return _portable.pointwise_conv1x1(x, kernel, data_format, bias)
    if keras.backend.backend() == "torch":
        from sepconv.kernels import _torch

        return _torch.pointwise(x, kernel, data_format, bias)
    return _portable.pointwise(x, kernel, data_format, bias)


def max_pool(x, pool_size, strides=None, padding="valid", data_format=None):
    """`keras.ops.max_pool`, with faster paths on PyTorch and JAX where they apply.

    Same arguments and results on every backend (`tests/test_pooling.py`);
    PyTorch (`_torch.max_pool`) and JAX (`_jax.max_pool`) have faster paths.
    """
    rank = len(x.shape) - 2
    pool_size = _validation.int_tuple(pool_size, rank, "pool_size")
    strides = pool_size if strides is None else _validation.int_tuple(strides, rank, "strides")
    padding = _validation.choice(str(padding).lower(), ("valid", "same"), "padding")
    data_format = _validation.data_format(data_format)
    if keras.backend.backend() == "torch" and not _exporting:
        from sepconv.kernels import _torch

        y = _torch.max_pool(x, tuple(pool_size), tuple(strides), padding, data_format)
        if y is not None:
            return y
    if keras.backend.backend() == "jax" and not _exporting:
        from sepconv.kernels import _jax

        y = _jax.max_pool(x, tuple(pool_size), tuple(strides), padding, data_format)
        if y is not None:
            return y
    return keras.ops.max_pool(x, pool_size, strides=strides, padding=padding, data_format=data_format)


BATCH_NORM_IMPLEMENTATIONS = ("fused", "keras")
_batch_norm_setting = None  # None: read SEPCONV_BATCH_NORM, default "fused"


def get_batch_norm_implementation():
    """"fused" (the default) or "keras": `use_batch_norm_implementation` or `SEPCONV_BATCH_NORM`."""
    if _batch_norm_setting is not None:
        return _batch_norm_setting
    value = os.environ.get("SEPCONV_BATCH_NORM", "fused")
    return _validation.choice(value, BATCH_NORM_IMPLEMENTATIONS, "SEPCONV_BATCH_NORM")


@contextlib.contextmanager
def use_batch_norm_implementation(name):
    """Within the block, `sepconv.layers.BatchNormalization` trains with `name`'s path.

    "keras" is Keras' own composite, for comparisons (`sepconv bench model --batch-norm`).
    Traced backends (TensorFlow, JAX) read it when a model's step is first traced.
    """
    global _batch_norm_setting
    previous = _batch_norm_setting
    _batch_norm_setting = _validation.choice(name, BATCH_NORM_IMPLEMENTATIONS, "name")
    try:
        yield
    finally:
        _batch_norm_setting = previous


def batch_norm_training(x, gamma, beta, axis, epsilon, relu=False):
    """`(normalized x, batch mean, batch variance)` in one fused op, or None without one.

    The variance is the biased one, as `keras.ops.moments` computes it; `gamma`/`beta`
    may be None. A 16-bit `x` comes with float32 `gamma`/`beta`: the normalized tensor
    has `x`'s dtype, the statistics are float32. `relu`: the first item is
    `relu(normalized x)` (on PyTorch fused into the op and its gradient). None means: compute it as Keras does (`keras.ops.moments`,
    then `keras.ops.batch_normalization`), which is what JAX wants (XLA fuses those),
    and what the "keras" setting of `use_batch_norm_implementation` asks for.
    """
    if get_batch_norm_implementation() == "keras":
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from sepconv.kernels import _tensorflow

        fused = _tensorflow.batch_norm_training(x, gamma, beta, axis, epsilon)
        return fused if fused is None or not relu else (keras.ops.relu(fused[0]), *fused[1:])
    if backend == "torch":
        from sepconv.kernels import _torch

        return _torch.batch_norm_training(x, gamma, beta, axis, epsilon, relu=relu)
    return None  # JAX: a hand-written two-pass gradient measured no faster than XLA's fusion of Keras' ops


def batch_norm_inference(x, gamma, beta, mean, variance, axis, epsilon, relu=False):
    """Inference-mode batch normalization with the given statistics in one fused op, or None.

    On TensorFlow, FusedBatchNormV3 (oneDNN on CPU) normalizes a 16-bit `x` itself, where
    Keras' composite casts to float32 and back and runs its multiply-adds, and ReLU, op by
    op: in bfloat16 these made `dsc_resnet10`'s inference slower than in float32. On
    PyTorch, float32 channels_last on the CPU takes one pass of the C kernel
    (`_torch.batch_norm_inference`) when no gradient is asked for. Float32 `gamma`, `beta`,
    `mean` and `variance` (None: no scale/offset). None elsewhere, when exporting (the
    runtimes fold Keras' composite), and with the "keras" setting.
    """
    if _exporting or get_batch_norm_implementation() == "keras":
        return None
    if keras.backend.backend() == "torch":
        from sepconv.kernels import _torch

        return _torch.batch_norm_inference(x, gamma, beta, mean, variance, axis, epsilon, relu)
    if keras.backend.backend() != "tensorflow":
        return None
    from sepconv.kernels import _tensorflow

    y = _tensorflow.batch_norm_inference(x, gamma, beta, mean, variance, axis, epsilon)
    return keras.ops.relu(y) if y is not None and relu else y
