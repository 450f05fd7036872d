"""Independent numpy references: plain loops, no sepconv code.

All take and return channels_last arrays and compute in float64. Only numpy
is imported, so scripts outside the tests (`tools/gpucheck.py`) use them too.
"""

import itertools

import numpy as np


def same_pads(size, kernel, stride, dilation=1):
    """(before, after) padding of TensorFlow's 'same' rule, which Keras follows on every backend.

    Output length ceil(size / stride); the odd pixel of padding goes after.
    """
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _pads(x, ksize, strides, padding, dilation):
    """Per spatial axis (before, after) padding for 'valid', 'same' or 'causal' (1-D)."""
    if padding == "causal":
        return [((ksize[0] - 1) * dilation[0], 0)]
    if padding == "same":
        return [same_pads(n, k, s, d) for n, k, s, d in zip(x.shape[1:-1], ksize, strides, dilation)]
    return [(0, 0)] * len(ksize)


def depthwise(x, kernel, strides, padding, dilation):
    """x: (N, *spatial, C); kernel: (*k, C, M). Loops over output positions and taps.

    Output channel c * M + m comes from input channel c, as in Keras.
    """
    rank = x.ndim - 2
    ksize = kernel.shape[:rank]
    channels, multiplier = kernel.shape[rank:]
    x = np.pad(x.astype(np.float64), [(0, 0), *_pads(x, ksize, strides, padding, dilation), (0, 0)])
    sizes = x.shape[1:-1]
    out_sizes = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(sizes, ksize, strides, dilation)]
    out = np.zeros((x.shape[0], *out_sizes, channels, multiplier))
    for position in itertools.product(*(range(o) for o in out_sizes)):
        for tap in itertools.product(*(range(k) for k in ksize)):
            index = tuple(p * s + t * d for p, s, t, d in zip(position, strides, tap, dilation))
            # (N, C, 1) * (C, M): every channel and multiplier of one tap at one position.
            out[(slice(None), *position)] += x[(slice(None), *index)][..., None] * kernel[tap]
    return out.reshape(*out.shape[:-2], channels * multiplier)


def depthwise_gradients(x, kernel, g, strides, padding, dilation):
    """d(sum(depthwise(x, kernel) * g)) / d(x, kernel), by a backpropagation loop.

    channels_last `x` (N, *spatial, C), `kernel` (*k, C, M), `g` like the output.
    Each output position scatters its gradient back to the inputs under each tap.
    """
    rank = x.ndim - 2
    ksize, (channels, multiplier) = kernel.shape[:rank], kernel.shape[rank:]
    pads = _pads(x, ksize, strides, padding, dilation)
    xp = np.pad(x.astype(np.float64), [(0, 0), *pads, (0, 0)])
    dxp, dkernel = np.zeros_like(xp), np.zeros(kernel.shape)
    grouped = g.reshape(g.shape[:-1] + (channels, multiplier)).astype(np.float64)
    for position in itertools.product(*(range(o) for o in g.shape[1:-1])):
        out = grouped[(slice(None), *position)]  # (N, C, M)
        for tap in itertools.product(*(range(k) for k in ksize)):
            index = (slice(None), *(p * s + t * d for p, s, t, d in zip(position, strides, tap, dilation)))
            dxp[index] += np.einsum("ncm,cm->nc", out, kernel[tap])
            dkernel[tap] += np.einsum("nc,ncm->cm", xp[index], out)
    crop = (slice(None), *(slice(a, a + n) for (a, _), n in zip(pads, x.shape[1:-1])), slice(None))
    return dxp[crop], dkernel


def pointwise(x, kernel):
    """x: (N, *spatial, C); kernel: (1, ..., 1, C, F)."""
    matrix = kernel.reshape(kernel.shape[-2], kernel.shape[-1])
    out = np.zeros(x.shape[:-1] + (matrix.shape[1],))
    for f in range(matrix.shape[1]):
        for c in range(matrix.shape[0]):
            out[..., f] += x[..., c] * matrix[c, f]
    return out


def relu(x):
    return np.maximum(x, 0)


def _pool_padded(x, pool_size, strides, padding):
    """`x` padded with -inf for 'same' pooling, and the (before, after) pads."""
    spatial = x.shape[1:-1]
    pads = [(0, 0)] * len(spatial)
    if padding == "same":
        pads = [same_pads(n, p, s) for n, p, s in zip(spatial, pool_size, strides)]
    return np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-np.inf), pads


def max_pool(x, pool_size, strides, padding):
    """Max pooling by a loop over output positions; -inf padding for 'same'."""
    xp, _ = _pool_padded(x, pool_size, strides, padding)
    out_shape = [(n - p) // s + 1 for n, p, s in zip(xp.shape[1:-1], pool_size, strides)]
    out = np.empty((x.shape[0], *out_shape, x.shape[-1]), x.dtype)
    spatial_axes = tuple(range(1, x.ndim - 1))
    for position in itertools.product(*(range(o) for o in out_shape)):
        window = tuple(slice(o * s, o * s + p) for o, s, p in zip(position, strides, pool_size))
        out[(slice(None), *position)] = xp[(slice(None), *window)].max(axis=spatial_axes)
    return out


def max_pool_gradient(x, g, pool_size, strides, padding):
    """The gradient routes each output's `g` to its window's (unique) maximum."""
    spatial = x.shape[1:-1]
    xp, pads = _pool_padded(x, pool_size, strides, padding)
    dxp = np.zeros(xp.shape)
    for position in itertools.product(*(range(o) for o in g.shape[1:-1])):
        for n, c in itertools.product(range(x.shape[0]), range(x.shape[-1])):
            window = tuple(slice(o * s, o * s + p) for o, s, p in zip(position, strides, pool_size))
            values = xp[(n, *window, c)]
            offset = np.unravel_index(np.argmax(values), values.shape)
            dxp[(n, *(w.start + o for w, o in zip(window, offset)), c)] += g[(n, *position, c)]
    inner = tuple(slice(before, before + size) for (before, _), size in zip(pads, spatial))
    return dxp[(slice(None), *inner, slice(None))]
