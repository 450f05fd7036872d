"""Triton kernels for 2-D depthwise convolution in channels-last (NHWC) layout.

Conventions shared by every kernel here:

* input `x` is `(N, H, W, C)` contiguous; `kernel` is `(KH, KW, C, M)`
  contiguous (M: depth multiplier); output channel `oc = c * M + m`, so the
  kernel read as `(KH * KW, C * M)` holds the weight of output channel `oc`
  at column `oc` and its input channel is `oc // M` (Keras' order);
* pixels `(n, oh, ow)` are flattened to one index `p` (row-major); a program
  owns a BLOCK_P x BLOCK_C tile of (pixels, channels), channels contiguous;
* every product is accumulated in float32; outputs are cast to the storage
  dtype on the final store;
* 'same' padding follows TensorFlow: out = ceil(n / s), the odd pixel after.

The weight gradient is a two-step reduction: each program sums its own range
of pixels into a row of a float32 partial buffer, then the rows are summed.
No atomics, so the result does not depend on scheduling order.
"""

import torch
import triton
import triton.language as tl
from triton.language.standard import _sum_combine

from sepconv.kernels.triton._tuning import (
    DIRECT_CONFIGS,
    FUSED_CONFIGS,
    WEIGHT_GRAD_CONFIGS,
    Launcher,
)

ACTIVATIONS = ("linear", "relu", "relu6")
_SHAPE_KEY = ["P", "C", "C_OUT", "H", "W", "KH", "KW", "SH", "SW", "DH", "DW"]


def conv_geometry(size, kernel, stride, dilation, padding):
    """(output length, padding before) along one axis.

    'valid': out = floor((n - (k - 1) * d - 1) / s) + 1. 'same' (TensorFlow's
    rule): out = ceil(n / s), total = max((out - 1) * s + (k - 1) * d + 1 - n, 0),
    before = total // 2. Same rule as `sepconv.kernels._portable.same_padding`.
    """
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        return max((size - effective) // stride + 1, 0), 0
    out = -(-size // stride)
    return out, max((out - 1) * stride + effective - size, 0) // 2


@triton.jit
def _sum(x, axis: tl.constexpr):
    # Same as tl.sum(x, axis). tl.sum and tl.zeros are @triton.jit functions fixed
    # when Triton is first imported; torch._dynamo imports Triton early, so a
    # TRITON_INTERPRET=1 set later cannot interpret them. Builtins (tl.reduce,
    # tl.full) always work, and the interpreter maps _sum_combine to numpy.
    return tl.reduce(x, axis, _sum_combine)


@triton.jit
def _activate(acc, ACTIVATION: tl.constexpr):
    if ACTIVATION == "relu":
        acc = tl.maximum(acc, 0.0)
    elif ACTIVATION == "relu6":
        acc = tl.minimum(tl.maximum(acc, 0.0), 6.0)
    return acc


@triton.jit
def _depthwise_tile(
    x_ptr, w_ptr, n, oh, ow, p_mask, oc, c_mask,
    H, W, C, C_OUT, PAD_H, PAD_W,
    KH: tl.constexpr, KW: tl.constexpr, M: tl.constexpr,
    SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """float32 depthwise output for pixels (n, oh, ow) x output channels oc."""
    ic = oc // M
    acc = tl.full([BLOCK_P, BLOCK_C], 0.0, tl.float32)
    for kh in tl.static_range(KH):
        ih = oh * SH - PAD_H + kh * DH
        row_ok = p_mask & (ih >= 0) & (ih < H)
        for kw in tl.static_range(KW):
            iw = ow * SW - PAD_W + kw * DW
            ok = row_ok & (iw >= 0) & (iw < W)
            pixel = ((n * H + ih) * W + iw).to(tl.int64)
            xv = tl.load(
                x_ptr + pixel[:, None] * C + ic[None, :], mask=ok[:, None] & c_mask[None, :], other=0.0
            )
            wv = tl.load(w_ptr + (kh * KW + kw) * C_OUT + oc, mask=c_mask, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    return acc


@triton.jit
def _forward_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    P, H, W, OH, OW, C, C_OUT, PAD_H, PAD_W,
    KH: tl.constexpr, KW: tl.constexpr, M: tl.constexpr,
    SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    oc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_mask = p < P
    c_mask = oc < C_OUT
    ow = p % OW
    oh = (p // OW) % OH
    n = p // (OW * OH)
    acc = _depthwise_tile(
        x_ptr, w_ptr, n, oh, ow, p_mask, oc, c_mask, H, W, C, C_OUT, PAD_H, PAD_W,
        KH, KW, M, SH, SW, DH, DW, BLOCK_P, BLOCK_C,
    )
    if HAS_BIAS:
        acc += tl.load(b_ptr + oc, mask=c_mask, other=0.0).to(tl.float32)[None, :]
    acc = _activate(acc, ACTIVATION)
    out = y_ptr + p.to(tl.int64)[:, None] * C_OUT + oc[None, :]
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=p_mask[:, None] & c_mask[None, :])


@triton.jit
def _input_grad_kernel(
    g_ptr, w_ptr, dx_ptr,
    P, H, W, OH, OW, C, C_OUT, PAD_H, PAD_W,
    KH: tl.constexpr, KW: tl.constexpr, M: tl.constexpr,
    SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """dx[n, ih, iw, c] = sum over m, taps with oh * SH - PAD_H + kh * DH == ih
    (and likewise for w) of g[n, oh, ow, c * M + m] * w[kh, kw, c, m]."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # input pixels
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)  # input channels
    p_mask = p < P
    c_mask = c < C
    iw = p % W
    ih = (p // W) % H
    n = p // (W * H)
    acc = tl.full([BLOCK_P, BLOCK_C], 0.0, tl.float32)
    for kh in tl.static_range(KH):
        num_h = ih + PAD_H - kh * DH
        oh = num_h // SH
        row_ok = p_mask & (num_h >= 0) & (num_h % SH == 0) & (oh < OH)
        for kw in tl.static_range(KW):
            num_w = iw + PAD_W - kw * DW
            ow = num_w // SW
            ok = row_ok & (num_w >= 0) & (num_w % SW == 0) & (ow < OW)
            pixel = ((n * OH + oh) * OW + ow).to(tl.int64)
            for m in tl.static_range(M):
                oc = c * M + m
                gv = tl.load(
                    g_ptr + pixel[:, None] * C_OUT + oc[None, :], mask=ok[:, None] & c_mask[None, :], other=0.0
                )
                wv = tl.load(w_ptr + (kh * KW + kw) * C_OUT + oc, mask=c_mask, other=0.0)
                acc += gv.to(tl.float32) * wv.to(tl.float32)[None, :]
    out = dx_ptr + p.to(tl.int64)[:, None] * C + c[None, :]
    tl.store(out, acc.to(dx_ptr.dtype.element_ty), mask=p_mask[:, None] & c_mask[None, :])


@triton.jit
def _weight_grad_kernel(
    x_ptr, g_ptr, dw_partial_ptr, db_partial_ptr,
    P, H, W, OH, OW, C, C_OUT, PAD_H, PAD_W, PIXELS_PER_SPLIT,
    KH: tl.constexpr, KW: tl.constexpr, M: tl.constexpr,
    SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    HAS_BIAS: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Partial sums over one split of output pixels:
    dw_partial[split, kh * KW + kw, oc] = sum_p g[p, oc] * x[tap(p, kh, kw), oc // M],
    db_partial[split, oc] = sum_p g[p, oc]."""
    split = tl.program_id(0)
    oc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = oc < C_OUT
    ic = oc // M
    taps = tl.arange(0, BLOCK_T)
    acc = tl.full([BLOCK_T, BLOCK_C], 0.0, tl.float32)
    bias_acc = tl.full([BLOCK_C], 0.0, tl.float32)
    start = split * PIXELS_PER_SPLIT
    end = tl.minimum(start + PIXELS_PER_SPLIT, P)
    for p0 in range(start, end, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        p_mask = p < end
        ow = p % OW
        oh = (p // OW) % OH
        n = p // (OW * OH)
        gv = tl.load(
            g_ptr + p.to(tl.int64)[:, None] * C_OUT + oc[None, :], mask=p_mask[:, None] & c_mask[None, :], other=0.0
        ).to(tl.float32)
        if HAS_BIAS:
            bias_acc += _sum(gv, axis=0)
        for kh in tl.static_range(KH):
            ih = oh * SH - PAD_H + kh * DH
            row_ok = p_mask & (ih >= 0) & (ih < H)
            for kw in tl.static_range(KW):
                iw = ow * SW - PAD_W + kw * DW
                ok = row_ok & (iw >= 0) & (iw < W)
                pixel = ((n * H + ih) * W + iw).to(tl.int64)
                xv = tl.load(
                    x_ptr + pixel[:, None] * C + ic[None, :], mask=ok[:, None] & c_mask[None, :], other=0.0
                )
                tap_sum = _sum(xv.to(tl.float32) * gv, axis=0)
                # Row kh * KW + kw of the (taps x channels) accumulator.
                acc += tl.where(taps[:, None] == kh * KW + kw, tap_sum[None, :], 0.0)
    t_mask = taps < KH * KW
    rows = split.to(tl.int64) * (KH * KW) + taps
    tl.store(
        dw_partial_ptr + rows[:, None] * C_OUT + oc[None, :], acc, mask=t_mask[:, None] & c_mask[None, :]
    )
    if HAS_BIAS:
        tl.store(db_partial_ptr + split.to(tl.int64) * C_OUT + oc, bias_acc, mask=c_mask)


@triton.jit
def _fused_forward_kernel(
    x_ptr, dw_ptr, dw_b_ptr, pw_ptr, pw_b_ptr, y_ptr,
    P, H, W, OH, OW, C, C_OUT, F, PAD_H, PAD_W,
    KH: tl.constexpr, KW: tl.constexpr, M: tl.constexpr,
    SH: tl.constexpr, SW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    HAS_DW_BIAS: tl.constexpr, DW_ACTIVATION: tl.constexpr,
    HAS_PW_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_F: tl.constexpr,
):
    """y = act(act_dw(depthwise(x) + dw_b) @ pw + pw_b); the depthwise tile
    stays in registers and feeds tl.dot, it is never written to memory."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    p_mask = p < P
    f_mask = f < F
    ow = p % OW
    oh = (p // OW) % OH
    n = p // (OW * OH)
    acc = tl.full([BLOCK_P, BLOCK_F], 0.0, tl.float32)
    for k0 in range(0, C_OUT, BLOCK_K):
        oc = k0 + tl.arange(0, BLOCK_K)
        k_mask = oc < C_OUT
        mid = _depthwise_tile(
            x_ptr, dw_ptr, n, oh, ow, p_mask, oc, k_mask, H, W, C, C_OUT, PAD_H, PAD_W,
            KH, KW, M, SH, SW, DH, DW, BLOCK_P, BLOCK_K,
        )
        if HAS_DW_BIAS:
            mid += tl.load(dw_b_ptr + oc, mask=k_mask, other=0.0).to(tl.float32)[None, :]
        mid = _activate(mid, DW_ACTIVATION)
        pw = tl.load(pw_ptr + oc[:, None] * F + f[None, :], mask=k_mask[:, None] & f_mask[None, :], other=0.0)
        # Padded channels hold zeros in both operands.
        operand_type = y_ptr.dtype.element_ty
        acc += tl.dot(mid.to(operand_type), pw.to(operand_type), input_precision=DOT_PRECISION)
    if HAS_PW_BIAS:
        acc += tl.load(pw_b_ptr + f, mask=f_mask, other=0.0).to(tl.float32)[None, :]
    acc = _activate(acc, ACTIVATION)
    out = y_ptr + p.to(tl.int64)[:, None] * F + f[None, :]
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=p_mask[:, None] & f_mask[None, :])


_forward = Launcher(_forward_kernel, DIRECT_CONFIGS, _SHAPE_KEY + ["M"])
_input_grad = Launcher(_input_grad_kernel, DIRECT_CONFIGS, _SHAPE_KEY + ["M"])
_weight_grad = Launcher(_weight_grad_kernel, WEIGHT_GRAD_CONFIGS, _SHAPE_KEY + ["M", "PIXELS_PER_SPLIT"])
_fused_forward = Launcher(_fused_forward_kernel, FUSED_CONFIGS, _SHAPE_KEY + ["M", "F"])

# Weight-gradient splits: enough programs to fill a large GPU, few enough
# that the float32 partial buffer stays small next to the activations.
_MAX_SPLITS = 512
_MIN_PIXELS_PER_SPLIT = 256


def _geometry(x_shape, kernel_shape, strides, dilation, padding):
    n, h, w, _ = x_shape
    kh, kw = kernel_shape[:2]
    oh, pad_h = conv_geometry(h, kh, strides[0], dilation[0], padding)
    ow, pad_w = conv_geometry(w, kw, strides[1], dilation[1], padding)
    return oh, ow, pad_h, pad_w


def _constexprs(kernel_shape, strides, dilation):
    kh, kw, _, m = kernel_shape
    return dict(KH=kh, KW=kw, M=m, SH=strides[0], SW=strides[1], DH=dilation[0], DW=dilation[1])


def forward(x, kernel, bias, strides, dilation, padding, activation="linear", config=None):
    """Depthwise convolution of NHWC `x` with `kernel` (KH, KW, C, M), plus
    optional `bias` (C * M,) and activation, in one pass. Returns NHWC."""
    n, h, w, c = x.shape
    c_out = c * kernel.shape[3]
    oh, ow, pad_h, pad_w = _geometry(x.shape, kernel.shape, strides, dilation, padding)
    y = torch.empty((n, oh, ow, c_out), device=x.device, dtype=x.dtype)
    p = n * oh * ow
    if y.numel() == 0:
        return y
    grid = lambda meta: (triton.cdiv(p, meta["BLOCK_P"]), triton.cdiv(c_out, meta["BLOCK_C"]))  # noqa: E731
    _forward(
        grid, x, kernel, bias if bias is not None else kernel, y,
        p, h, w, oh, ow, c, c_out, pad_h, pad_w,
        **_constexprs(kernel.shape, strides, dilation),
        HAS_BIAS=bias is not None, ACTIVATION=activation, config=config,
    )
    return y


def input_grad(grad, kernel, x_shape, strides, dilation, padding, config=None):
    """Gradient of the depthwise output w.r.t. its NHWC input."""
    n, h, w, c = x_shape
    _, oh, ow, c_out = grad.shape
    _, _, pad_h, pad_w = _geometry(x_shape, kernel.shape, strides, dilation, padding)
    dx = torch.empty(x_shape, device=grad.device, dtype=grad.dtype)
    p = n * h * w
    if grad.numel() == 0:
        return dx.zero_()
    grid = lambda meta: (triton.cdiv(p, meta["BLOCK_P"]), triton.cdiv(c, meta["BLOCK_C"]))  # noqa: E731
    _input_grad(
        grid, grad, kernel, dx,
        p, h, w, oh, ow, c, c_out, pad_h, pad_w,
        **_constexprs(kernel.shape, strides, dilation), config=config,
    )
    return dx


def weight_grad(x, grad, kernel_shape, with_bias, strides, dilation, padding, config=None):
    """float32 gradients of the kernel (KH, KW, C, M) and, if `with_bias`, of
    the bias (C * M,): per-split partial sums, then one sum over splits."""
    n, h, w, c = x.shape
    _, oh, ow, c_out = grad.shape
    kh, kw = kernel_shape[:2]
    _, _, pad_h, pad_w = _geometry(x.shape, kernel_shape, strides, dilation, padding)
    p = n * oh * ow
    step = max(_MIN_PIXELS_PER_SPLIT, triton.cdiv(p, _MAX_SPLITS))
    step = triton.cdiv(step, 128) * 128  # a multiple of every BLOCK_P
    splits = max(triton.cdiv(p, step), 1)
    dw_partial = torch.zeros((splits, kh * kw, c_out), device=x.device, dtype=torch.float32)
    db_partial = torch.zeros((splits, c_out), device=x.device, dtype=torch.float32) if with_bias else dw_partial
    if p > 0:
        grid = lambda meta: (splits, triton.cdiv(c_out, meta["BLOCK_C"]))  # noqa: E731
        _weight_grad(
            grid, x, grad, dw_partial, db_partial,
            p, h, w, oh, ow, c, c_out, pad_h, pad_w, step,
            **_constexprs(kernel_shape, strides, dilation),
            HAS_BIAS=with_bias, BLOCK_T=triton.next_power_of_2(kh * kw), config=config,
        )
    dw = dw_partial.sum(0).reshape(kernel_shape)
    return dw, (db_partial.sum(0) if with_bias else None)


def fused_forward(
    x, kernel, depthwise_bias, pointwise, pointwise_bias, strides, dilation, padding,
    depthwise_activation="linear", activation="linear", config=None,
):
    """act(act_dw(depthwise(x) + depthwise_bias) @ pointwise + pointwise_bias),
    with `pointwise` of shape (C * M, F); NHWC in and out."""
    n, h, w, c = x.shape
    c_out = c * kernel.shape[3]
    f = pointwise.shape[1]
    oh, ow, pad_h, pad_w = _geometry(x.shape, kernel.shape, strides, dilation, padding)
    y = torch.empty((n, oh, ow, f), device=x.device, dtype=x.dtype)
    p = n * oh * ow
    if y.numel() == 0:
        return y
    grid = lambda meta: (triton.cdiv(p, meta["BLOCK_P"]), triton.cdiv(f, meta["BLOCK_F"]))  # noqa: E731
    _fused_forward(
        grid, x, kernel,
        depthwise_bias if depthwise_bias is not None else kernel,
        pointwise,
        pointwise_bias if pointwise_bias is not None else pointwise,
        y, p, h, w, oh, ow, c, c_out, f, pad_h, pad_w,
        **_constexprs(kernel.shape, strides, dilation),
        HAS_DW_BIAS=depthwise_bias is not None, DW_ACTIVATION=depthwise_activation,
        HAS_PW_BIAS=pointwise_bias is not None, ACTIVATION=activation,
        DOT_PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
        config=config,
    )
    return y
