"""A trained convolution kernel as depthwise and pointwise kernels, by SVD.

Network Decoupling (Guo, Li, Lin, Chen & Li, "Network Decoupling: From Regular
to Depthwise Separable Convolutions", BMVC 2018, arXiv:1808.05517, Sec. 3):
a convolution sums over input channels ``c`` the responses of the kernel
slice ``W_c``, the ``(K, N)`` matrix of channel ``c``'s taps (``K`` = kernel
area, ``N`` = filters). Its SVD ``W_c = U_c S_c V_c^T`` splits that slice into
``q = min(K, N)`` products of a spatial filter ``U_c[:, m] sqrt(S_c[m])``
(one depthwise filter) and a channel mixing row ``sqrt(S_c[m]) V_c^T[m, :]``
(one row of the pointwise kernel):

    depthwise[..., c, m]     = U_c[:, m] * sqrt(S_c[m])   (reshaped to the window)
    pointwise[c * r + m, :]  = sqrt(S_c[m]) * V_c^T[m, :]

so a `DepthwiseSeparableConv` with ``depth_multiplier = r`` computes
``sum_c sum_{m < r} (x_c * u_cm) v_cm^T``. With ``r = q`` it equals the
convolution exactly; with ``r < q`` each slice is its best rank-``r``
approximation in the Frobenius norm (Eckart & Young 1936, "The approximation
of one matrix by another of lower rank", Psychometrika 1(3)), and the kernel's
relative Frobenius error is ``sqrt(sum_c sum_{m >= r} S_c[m]^2 / ||W||_F^2)``.

The pointwise row index ``c * r + m`` is the channel-major order of Keras'
`DepthwiseConv2D`, which `sepconv.layers` follows. Everything here is numpy
float64; callers cast.
"""

import math

import numpy as np

__all__ = ["energy_kept", "factorize", "full_rank", "singular_values", "smallest_rank"]


def _slices(kernel):
    """`(C, K, N)`: kernel `(*window, C, N)` with each window flattened in C order."""
    kernel = np.asarray(kernel, dtype=np.float64)
    *window, channels, filters = kernel.shape
    return kernel.reshape(math.prod(window), channels, filters).transpose(1, 0, 2)


def full_rank(kernel_shape):
    """``min(K, N)``: the depth multiplier at which the factorization is exact."""
    *window, _, filters = kernel_shape
    return min(math.prod(window), filters)


def singular_values(kernel):
    """`(C, q)` singular values of each input channel's slice, descending."""
    return np.linalg.svd(_slices(kernel), compute_uv=False)


def factorize(kernel, rank):
    """Depthwise and pointwise kernels of rank `rank` for a convolution kernel.

    Args:
        kernel: `(*window, in_channels, filters)`, the layout of Keras `ConvND`.
        rank: depth multiplier, `1 <= rank <= full_rank(kernel.shape)`.

    Returns:
        `(depthwise, pointwise)` float64 arrays of shapes
        `(*window, in_channels, rank)` and `(1, ..., 1, in_channels * rank, filters)`.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    *window, channels, filters = kernel.shape
    if not 1 <= rank <= full_rank(kernel.shape):
        raise ValueError(
            f"rank must be between 1 and {full_rank(kernel.shape)} for a kernel of shape "
            f"{kernel.shape}. Received: rank={rank}"
        )
    u, s, vt = np.linalg.svd(_slices(kernel), full_matrices=False)
    root = np.sqrt(s[:, :rank])  # (C, r)
    depthwise = u[:, :, :rank] * root[:, None, :]  # (C, K, r)
    depthwise = depthwise.transpose(1, 0, 2).reshape(*window, channels, rank)
    pointwise = root[:, :, None] * vt[:, :rank, :]  # (C, r, N): row c * r + m
    pointwise = pointwise.reshape((1,) * len(window) + (channels * rank, filters))
    return depthwise, pointwise


def energy_kept(singular, rank):
    """Fraction of ``||W||_F^2`` the first `rank` components of every slice keep."""
    squares = np.square(singular)
    total = squares.sum()
    return 1.0 if total == 0 else float(squares[:, :rank].sum() / total)


def smallest_rank(singular, energy):
    """The smallest common rank whose `energy_kept` reaches `energy`."""
    squares = np.square(singular).sum(axis=0)  # pooled over channels, per component
    total = squares.sum()
    if total == 0:
        return 1
    kept = np.cumsum(squares) / total
    # A tolerance so that energy=1.0 is met by the full rank despite rounding.
    return min(int(np.searchsorted(kept, energy - 1e-12)) + 1, len(kept))
