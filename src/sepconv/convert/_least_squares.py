"""Data-aware reconstruction of one converted layer: least squares on its normal equations.

The SVD of `_factorize` minimizes the error in the kernel; what matters is the
error in what the layer outputs on real inputs, and in a converted network the
errors of earlier layers compound. Following the reconstruction methods for
decomposed convolutions (Zhang, Zou, He & Sun, "Accelerating Very Deep
Convolutional Networks", TPAMI 2016, arXiv:1505.06798, Sec. 3: fit the
pre-activation response, with the inputs of the approximated network so later
layers correct earlier errors; He et al., "Depth-wise Decomposition", 2019,
arXiv:1910.09455; Li et al., "Few Sample Knowledge Distillation", CVPR 2020: a
1x1 correction solved by least squares from a few hundred unlabeled images),
each converted layer, in network order, is refitted so that

    separable(x_converted)  ~  conv(x_original)      (both before the activation)

where ``x_converted`` is what the converted network (earlier layers already
reconstructed) feeds the layer and ``x_original`` what the original network
feeds it on the same calibration samples. No labels are used. Layers that
follow (BatchNorm, activations, merges) are left as they are; the target is the
convolution's own pre-activation output, for which least squares is exact (the
ReLU rounds of `_reconstruct` then change the targets, not the patches:
`Normal.retargeted`).

Everything the fit needs is in the normal equations of the patch matrix
``X`` (one row per output position and call, one column per input channel and
kernel tap, ``c * K + k``, plus a column of ones when the layer has a bias) and
the target ``Y`` (one column per filter): ``X^T X``, ``X^T Y`` and
``||Y||^2``, accumulated in float64 over streamed calibration batches. Memory
is therefore ``(C K + 1)^2`` float64 for the Gram matrix plus ``(C K + 1) F``
for the cross term, independent of the number of samples (VGG's 256-channel
3x3 layers: 42.5 MB + 4.7 MB), plus one batch of patches in float32 and one
chunk of at most `CHUNK_ELEMENTS` of them in float64.

The separable layer's effective kernel is ``W_c = D_c P_c`` per input channel
``c`` (``D_c``: ``K x r`` depthwise filters, ``P_c``: ``r x F`` pointwise rows),
and the squared error is a quadratic form in it. Alternating least squares,
each step closed-form and never increasing the error:

1. pointwise kernel and bias given the depthwise filters: ordinary least
   squares on the depthwise outputs (Gram ``B^T X^T X B`` with ``B`` the
   block-diagonal depthwise matrix), in float64 with a ridge term
   ``ridge * mean(diag)`` (not on the bias);
2. depthwise filters given the pointwise kernel, one channel at a time
   (Gauss-Seidel): with the other channels fixed, the error is quadratic in
   ``D_c`` with minimizer ``D_c = -G_cc^-1 R_c P_c^T (P_c P_c^T)^-1``, where
   ``G_cc`` is the channel's ``K x K`` block of ``X^T X`` and ``R_c`` the
   gradient of the other channels' part.

The best iterate (lowest error on the calibration data) is kept, so the result
is never worse than the SVD initialization on that data.
"""

import contextlib
import copy
import dataclasses
import math

import keras
import numpy as np

__all__ = ["Fit", "Normal", "fit_layer", "pack", "patches", "pre_activation", "unpack", "whitened_factors"]

CHUNK_ELEMENTS = 1 << 22  # float64 patch entries per Gram update (32 MiB)


def _channels_last(x, data_format):
    x = np.asarray(keras.ops.convert_to_numpy(x))
    return x if data_format == "channels_last" else np.moveaxis(x, 1, -1)


def patches(layer, x):
    """The `(positions, C * K)` patch matrix of `x` under `layer`'s window, as float32.

    Column ``c * K + k`` holds input channel ``c`` at tap ``k`` (window flattened in
    C order), the order of `_factorize`. Extracted by a depthwise convolution with
    one-hot filters, so padding, strides, dilation and data format follow Keras'
    own convolution on every backend.
    """
    x = _channels_last(x, layer.data_format).astype("float32")
    padding = layer.padding
    if padding == "causal":  # Keras' Conv1D pads on the left, then runs 'valid'
        x = np.pad(x, [(0, 0), ((layer.kernel_size[0] - 1) * layer.dilation_rate[0], 0), (0, 0)])
        padding = "valid"
    window, channels = tuple(layer.kernel_size), x.shape[-1]
    taps = math.prod(window)
    one_hot = np.eye(taps, dtype="float32").reshape(*window, 1, taps)
    kernel = np.broadcast_to(one_hot, (*window, channels, taps)).copy()
    out = keras.ops.depthwise_conv(
        x, kernel, layer.strides, padding, data_format="channels_last", dilation_rate=layer.dilation_rate
    )
    return np.asarray(keras.ops.convert_to_numpy(out)).reshape(-1, channels * taps)


@contextlib.contextmanager
def _linear(layer):
    """`layer` without its activation while active (its `call` reads the attribute)."""
    saved = layer.activation
    layer.activation = keras.activations.linear
    try:
        yield layer
    finally:
        layer.activation = saved


def pre_activation(layer, x):
    """`(positions, F)`: the convolution's output before its activation, channels last."""
    with _linear(layer):
        y = layer(x)
    y = _channels_last(y, layer.data_format)
    return y.reshape(-1, y.shape[-1])


@dataclasses.dataclass(eq=False)
class Normal:
    """Normal equations ``X^T X``, ``X^T Y``, ``||Y||^2`` accumulated over batches (float64)."""

    columns: int  # C * K
    filters: int
    bias: bool
    rows: int = 0

    def __post_init__(self):
        size = self.columns + int(self.bias)
        self.xx = np.zeros((size, size))
        self.xy = np.zeros((size, self.filters))
        self.yy = 0.0

    def add(self, x, y):
        """Adds rows `x` `(n, C K)` (patches) with targets `y` `(n, F)`."""
        step = max(1, CHUNK_ELEMENTS // (self.columns + 1))
        for start in range(0, len(x), step):
            a = x[start : start + step].astype(np.float64)
            b = y[start : start + step].astype(np.float64)
            if self.bias:
                a = np.concatenate([a, np.ones((len(a), 1))], axis=1)
            self.xx += a.T @ a
            self.xy += a.T @ b
            self.yy += float(np.sum(b * b))
        self.rows += len(x)

    def retargeted(self):
        """The same patches (``X^T X`` shared, not copied) with no targets yet (`add_targets`)."""
        other = copy.copy(self)
        other.xy, other.yy = np.zeros_like(self.xy), 0.0
        return other

    def add_targets(self, x, y):
        """Adds ``X^T Y`` and ``||Y||^2`` of rows whose ``X^T X`` is already counted."""
        step = max(1, CHUNK_ELEMENTS // (self.columns + 1))
        for start in range(0, len(x), step):
            a = x[start : start + step].astype(np.float64)
            b = y[start : start + step].astype(np.float64)
            self.xy[: self.columns] += a.T @ b
            if self.bias:
                self.xy[-1] += b.sum(axis=0)
            self.yy += float(np.sum(b * b))

    @property
    def nbytes(self):
        return self.xx.nbytes + self.xy.nbytes

    def error(self, effective, bias):
        """Relative error ``||Y - X W - 1 b|| / ||Y||`` of a full kernel `(C K, F)` and bias."""
        theta = effective if not self.bias else np.concatenate([effective, bias[None, :]], axis=0)
        squared = np.sum(theta * (self.xx @ theta)) - 2 * np.sum(theta * self.xy) + self.yy
        return math.sqrt(max(squared, 0.0) / self.yy) if self.yy > 0 else 0.0


def unpack(depthwise, pointwise):
    """Keras kernels -> `(D (C, K, r), P (C, r, F))` float64."""
    *window, channels, rank = depthwise.shape
    d = np.asarray(depthwise, np.float64).reshape(math.prod(window), channels, rank).transpose(1, 0, 2)
    return d, np.asarray(pointwise, np.float64).reshape(channels, rank, -1)


def pack(d, p, window):
    """`(D, P)` -> Keras kernels `(*window, C, r)` and `(1, ..., 1, C r, F)`."""
    channels, _, rank = d.shape
    depthwise = d.transpose(1, 0, 2).reshape(*window, channels, rank)
    return depthwise, p.reshape((1,) * len(window) + (channels * rank, p.shape[-1]))


def _effective(d, p):
    """The full kernel `(C K, F)` a separable layer computes: ``W_c = D_c P_c``."""
    return np.matmul(d, p).reshape(-1, p.shape[-1])


def _solve(a, b, ridge, penalized):
    """``(A + ridge * mean(diag A) * I_penalized)^-1 B``; ``ridge=0``: the least-norm solution."""
    if ridge == 0:
        return np.linalg.lstsq(a, b, rcond=None)[0]
    a = a.copy()
    scale = float(np.mean(np.diag(a)[penalized])) if penalized.any() else 0.0
    a[penalized, penalized] += ridge * (scale if scale > 0 else 1.0)
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, b, rcond=None)[0]


def solve_pointwise(normal, d, ridge):
    """Pointwise `(C, r, F)` and bias `(F,)` minimizing the error given depthwise `d`."""
    channels, taps, rank = d.shape
    gram = normal.xx[: channels * taps, : channels * taps]
    # X^T X B, with B the (C K, C r) block-diagonal depthwise matrix: (C K, C, r).
    gram_b = np.matmul(gram.reshape(channels * taps, channels, taps).transpose(1, 0, 2), d)  # (C, C K, r)
    gram_b = gram_b.transpose(1, 0, 2).reshape(channels * taps, channels * rank)
    # B^T X^T X B: (C r, C r).
    btgb = np.matmul(d.transpose(0, 2, 1), gram_b.reshape(channels, taps, channels * rank)).reshape(channels * rank, -1)
    btxy = np.matmul(d.transpose(0, 2, 1), normal.xy[: channels * taps].reshape(channels, taps, -1))
    btxy = btxy.reshape(channels * rank, -1)
    size = channels * rank + int(normal.bias)
    a, b = np.zeros((size, size)), np.zeros((size, normal.filters))
    a[: channels * rank, : channels * rank], b[: channels * rank] = btgb, btxy
    if normal.bias:
        btg1 = np.matmul(d.transpose(0, 2, 1), normal.xx[: channels * taps, -1].reshape(channels, taps, 1))
        a[:-1, -1] = a[-1, :-1] = btg1.reshape(-1)
        a[-1, -1], b[-1] = normal.xx[-1, -1], normal.xy[-1]
    penalized = np.arange(size) < channels * rank
    theta = _solve(a, b, ridge, penalized)
    bias = theta[-1] if normal.bias else np.zeros(normal.filters)
    return theta[: channels * rank].reshape(channels, rank, -1), bias


def sweep_depthwise(normal, d, p, bias, ridge):
    """One Gauss-Seidel pass over input channels: each `D_c` optimal given the rest."""
    channels, taps, rank = d.shape
    size = channels * taps
    gram = normal.xx[:size, :size]
    target = normal.xy[:size] - (np.outer(normal.xx[:size, -1], bias) if normal.bias else 0.0)
    d = d.copy()
    effective = _effective(d, p)  # (C K, F)
    product = gram @ effective  # X^T X W, kept current as channels change
    for c in range(channels):
        rows = slice(c * taps, (c + 1) * taps)
        block = gram[rows, rows]
        residual = product[rows] - block @ effective[rows] - target[rows]  # (K, F)
        pc = p[c]  # (r, F)
        pp = pc @ pc.T
        if not np.any(pp):
            continue  # a channel whose pointwise rows are zero does not reach the output
        left = _solve(block, residual @ pc.T, ridge, np.ones(taps, bool))  # G_cc^-1 R_c P_c^T
        new = -_solve(pp.T, left.T, ridge, np.ones(rank, bool)).T  # ... (P_c P_c^T)^-1
        change = (new - d[c]) @ pc
        product += gram[:, rows] @ change
        effective[rows] += change
        d[c] = new
    return d


def _balance(d, p):
    """Rescales each depthwise filter and its pointwise row to equal norms (same product)."""
    dn = np.linalg.norm(d, axis=1)  # (C, r)
    pn = np.linalg.norm(p, axis=2)  # (C, r)
    scale = np.where((dn > 0) & (pn > 0), np.sqrt(pn / np.where(dn > 0, dn, 1)), 1.0)
    return d * scale[:, None, :], p / scale[:, :, None]


@dataclasses.dataclass(frozen=True)
class Fit:
    depthwise: np.ndarray  # D (C, K, r)
    pointwise: np.ndarray  # P (C, r, F)
    bias: np.ndarray  # (F,)
    error_before: float
    error_after: float
    steps: tuple  # error after each step: pointwise solve, then depthwise sweep, ...


def fit_layer(normal, d, p, bias, iterations=4, ridge=1e-6):
    """Alternating least squares from `(d, p, bias)`; see the module docstring.

    `iterations` rounds of (pointwise solve, depthwise sweep), then a last
    pointwise solve; `iterations=0` solves the pointwise kernel and bias only.
    Returns a `Fit` holding the best iterate and the relative errors.
    """
    before = normal.error(_effective(d, p), bias)
    best = (before, d, p, bias)
    errors = []
    for step in range(iterations + 1):
        p, bias = solve_pointwise(normal, d, ridge)
        errors.append(normal.error(_effective(d, p), bias))
        if errors[-1] < best[0]:
            best = (errors[-1], d, p, bias)
        if step == iterations:
            break
        d = sweep_depthwise(normal, d, p, bias, ridge)
        errors.append(normal.error(_effective(d, p), bias))
        if errors[-1] < best[0]:
            best = (errors[-1], d, p, bias)
    error, d, p, bias = best
    d, p = _balance(d, p)
    return Fit(d, p, bias, before, error, tuple(errors))


def whitened_factors(kernel, blocks, rank, ridge=1e-6):
    """Per-channel factors of rank `rank` that are best on the data, and the singular values.

    With ``G_cc = L_c L_c^T`` the channel's patch covariance (`blocks`, `(C, K, K)`),
    the channel's output error is ``||L_c^T (W_c - D_c P_c)||_F``: the truncated SVD of
    ``L_c^T W_c`` minimizes it (Eckart-Young in the whitened metric), and
    ``D_c = L_c^-T U_r sqrt(S_r)``. Cross-channel covariances are ignored here (the
    alternating least squares accounts for them). Returns `(D, P, singular)`.
    """
    kernel = np.asarray(kernel, np.float64)
    *window, channels, filters = kernel.shape
    taps = math.prod(window)
    slices = kernel.reshape(taps, channels, filters).transpose(1, 0, 2)  # (C, K, F)
    d = np.zeros((channels, taps, rank))
    p = np.zeros((channels, rank, filters))
    singular = np.zeros((channels, min(taps, filters)))
    # Eigenvalues are floored at a fraction of the mean per-tap variance, so that L_c inverts;
    # a channel that is always zero then keeps its kernel's own SVD.
    scale = float(np.mean(np.trace(blocks, axis1=1, axis2=2))) / taps
    floor = max(ridge, 1e-12) * (scale if scale > 0 else 1.0)
    for c in range(channels):
        # G_cc = V diag(w) V^T; L_c^T = diag(sqrt(w)) V^T.
        w, v = np.linalg.eigh(blocks[c])
        w = np.maximum(w, floor)
        u, s, vt = np.linalg.svd(np.sqrt(w)[:, None] * (v.T @ slices[c]), full_matrices=False)
        singular[c] = s
        root = np.sqrt(s[:rank])
        d[c] = v @ ((u[:, :rank] * root) / np.sqrt(w)[:, None])
        p[c] = root[:, None] * vt[:rank]
    return d, p, singular
