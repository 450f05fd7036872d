"""JAX fast path: shifted multiply-adds with a hand-written gradient.

XLA:CPU lowers a grouped convolution (`feature_group_count=C`) and, worse,
its filter gradient (`batch_group_count=C`) to slow generic loops; the
shifted formulation fuses into one elementwise loop instead. Autodiff of it
is still slow for the kernel gradient: it materializes one shifted copy of
the input per tap and reduces each with a generic reduction over
(batch, *spatial). The custom VJP below keeps autodiff for the input
gradient (one fused loop over an incoming gradient computed once) and
writes the kernel gradient as a pairwise sum over the batch, an elementwise
loop XLA:CPU vectorizes and parallelizes, followed by a small reduction
over the spatial positions.
"""

import functools

import jax
import jax.numpy as jnp
from keras import ops

from sepconv.kernels import _dispatch, _portable


def _forward(x, kernel, strides, padding, data_format, dilation_rate):
    return _portable.depthwise_shifted(x, kernel, strides, padding, data_format, dilation_rate)


def _batch_sum(p):
    """Sum over axis 0 as a balanced tree of elementwise adds."""
    while p.shape[0] > 1:
        half = p.shape[0] // 2
        odd = p[2 * half :]
        p = p[:half] + p[half : 2 * half]
        if odd.shape[0]:
            p = jnp.concatenate([p[:1] + odd, p[1:]])
    return p[0]


def _kernel_gradient(x, g, kernel_shape, strides, padding, data_format, dilation_rate):
    """sum over batch and positions of window(x) * g, for every tap at once."""
    x, windows = _portable.shifted_windows(x, kernel_shape, strides, padding, data_format, dilation_rate)
    accumulate = jnp.promote_types(g.dtype, jnp.float32)
    # (taps, *spatial, C) or (taps, C, *spatial): one loop over positions for all taps.
    per_position = jnp.stack([_batch_sum((x[window] * g).astype(accumulate)) for window in windows])
    channel = per_position.ndim - 1 if data_format == "channels_last" else 1
    spatial = tuple(axis for axis in range(1, per_position.ndim) if axis != channel)
    return jnp.sum(per_position, axis=spatial).reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _shifted(x, kernel, strides, padding, data_format, dilation_rate):
    return _forward(x, kernel, strides, padding, data_format, dilation_rate)


def _shifted_fwd(x, kernel, strides, padding, data_format, dilation_rate):
    return _forward(x, kernel, strides, padding, data_format, dilation_rate), (x, kernel)


def _computed_once(g, kernel):
    """`g` itself, in a form XLA:CPU writes to memory once before its readers.

    XLA:CPU fuses a cheap elementwise producer of the incoming gradient (the
    backward of a BatchNorm right after the depthwise step) into every shifted
    read of it below, so that producer ran once per tap: 9 times for a 3x3
    kernel. XLA does not fuse an in-place dynamic_update_slice into its
    readers, and cannot remove one whose index it cannot fold. The update is
    the slice already at that index, so the value is `g` whatever the index.
    """
    if not g.shape[0] or not _dispatch._default_device_is_cpu():
        return g
    index = jnp.isnan(kernel.ravel()[0]).astype(jnp.int32)  # 0, but not a constant to XLA
    return jax.lax.dynamic_update_slice_in_dim(g, jax.lax.dynamic_slice_in_dim(g, index, 1), index, axis=0)


def _shifted_bwd(strides, padding, data_format, dilation_rate, residuals, g):
    x, kernel = residuals
    g = _computed_once(g, kernel)
    _, input_vjp = jax.vjp(lambda x: _forward(x, kernel, strides, padding, data_format, dilation_rate), x)
    (dx,) = input_vjp(g)
    dkernel = _kernel_gradient(x, g, kernel.shape, strides, padding, data_format, dilation_rate)
    return dx, dkernel.astype(kernel.dtype)


_shifted.defvjp(_shifted_fwd, _shifted_bwd)


def depthwise_shifted(x, kernel, strides, padding, data_format, dilation_rate):
    """`_portable.depthwise_shifted` with the custom gradient above.

    16-bit inputs on the CPU are computed in float32 and cast back: XLA:CPU runs 16-bit
    multiply-adds and sums no faster, and under `mixed_bfloat16` the float32 version
    trained `vgg_separable` 1.6x and `dsc_resnet10` 1.8x faster (`sepconv bench model`).
    """
    x, kernel = ops.convert_to_tensor(x), ops.convert_to_tensor(kernel)
    args = (tuple(strides), padding, data_format, tuple(dilation_rate))
    if x.dtype in (jnp.bfloat16, jnp.float16) and _dispatch._default_device_is_cpu():
        return _shifted(x.astype(jnp.float32), kernel.astype(jnp.float32), *args).astype(x.dtype)
    return _shifted(x, kernel, *args)


def _window_shapes(shape, pool_size, first):
    """`(cropped, windowed)`: each pooled size cut to whole windows, then split into (n // k, k)."""
    sizes = shape[first : first + len(pool_size)]
    head, rest = tuple(shape[:first]), tuple(shape[first + len(pool_size) :])
    cropped = head + tuple(n // k * k for n, k in zip(sizes, pool_size)) + rest
    windowed = head + sum(((n // k, k) for n, k in zip(sizes, pool_size)), ()) + rest
    return cropped, windowed


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool(x, pool_size, first):
    data_format = "channels_last" if first == 1 else "channels_first"
    return ops.max_pool(x, pool_size, strides=pool_size, padding="valid", data_format=data_format)


def _max_pool_fwd(x, pool_size, first):
    y = _max_pool(x, pool_size, first)
    return y, (x, y)


def _max_pool_bwd(pool_size, first, residuals, g):
    x, y = residuals
    cropped, windowed = _window_shapes(x.shape, pool_size, first)
    windows = jnp.reshape(x[tuple(slice(0, n) for n in cropped)], windowed)
    axes = tuple(first + 2 * i + 1 for i in range(len(pool_size)))
    hits = windows == jnp.expand_dims(y, axes)
    share = jnp.expand_dims(g, axes) / jnp.sum(hits, axis=axes, keepdims=True).astype(g.dtype)
    dx = jnp.reshape(jnp.where(hits, share, 0), cropped)
    # the rows and columns no window covers get no gradient
    return (jnp.pad(dx, [(0, n - m) for n, m in zip(x.shape, cropped)]),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x, pool_size, strides, padding, data_format):
    """Keras' max pooling with an elementwise gradient for non-overlapping windows, or None.

    For `strides == pool_size` with "valid" padding (or "same" where every size
    divides): XLA:CPU derives the gradient of `reduce_window` as a select-and-scatter
    that fills full-size index and zero arrays every step (about 100 ms of a
    `vgg_mobilenet` step at batch 128 on a 2-core CPU). Here the forward is Keras'
    and the gradient goes, window by window, to the inputs equal to the maximum
    (shared where several are: a subgradient, as `jnp.max`'s).
    """
    if tuple(strides) != tuple(pool_size):
        return None
    x = ops.convert_to_tensor(x)
    first = 1 if data_format == "channels_last" else 2
    sizes = x.shape[first : first + len(pool_size)]
    if padding == "same" and any(n % k for n, k in zip(sizes, pool_size)):
        return None
    return _max_pool(x, tuple(pool_size), first)
