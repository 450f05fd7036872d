"""Independent numpy references: plain loops, no sepconv code."""

import itertools

import numpy as np


def _same_pads(size, kernel, stride, dilation):
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def depthwise(x, kernel, strides, padding, dilation):
    """x: (N, *spatial, C) channels_last; kernel: (*k, C, M). Loops over taps and outputs."""
    rank = x.ndim - 2
    ksize = kernel.shape[:rank]
    channels, multiplier = kernel.shape[rank:]
    if padding == "causal":
        left = (ksize[0] - 1) * dilation[0]
        x = np.pad(x, [(0, 0), (left, 0), (0, 0)])
    elif padding == "same":
        pads = [_same_pads(n, k, s, d) for n, k, s, d in zip(x.shape[1:-1], ksize, strides, dilation)]
        x = np.pad(x, [(0, 0), *pads, (0, 0)])
    sizes = x.shape[1:-1]
    out_sizes = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(sizes, ksize, strides, dilation)]
    out = np.zeros((x.shape[0], *out_sizes, channels * multiplier), dtype=np.float64)
    for position in itertools.product(*(range(o) for o in out_sizes)):
        for c in range(channels):
            for m in range(multiplier):
                total = np.zeros(x.shape[0])
                for tap in itertools.product(*(range(k) for k in ksize)):
                    index = tuple(p * s + t * d for p, s, t, d in zip(position, strides, tap, dilation))
                    total += x[(slice(None), *index, c)] * kernel[(*tap, c, m)]
                out[(slice(None), *position, c * multiplier + m)] = total
    return out


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
