"""PyTorch fast paths: torch's own kernels, called without layout copies.

Keras' torch backend runs every convolution in NCHW: for channels_last
inputs it makes the input contiguous in NCHW, converts it to torch's
`channels_last` memory format (a second copy), convolves and permutes back,
and autograd replays both copies backwards. A channels_last Keras tensor
(N, *spatial, C) permuted to (N, C, *spatial) is already a `channels_last`
memory-format view, which oneDNN's depthwise convolution reads directly,
and its output permuted back is again a plain contiguous channels_last
tensor. `depthwise_native` calls `torch.nn.functional.conv*d` on such views:
the same kernel, none of the copies.
"""

import functools

import torch
import torch.nn.functional as F
from keras import ops

from sepconv.kernels import _native, _portable

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _to_channels_first_view(x, rank):
    return x.permute(0, rank + 1, *range(1, rank + 1))


def _to_channels_last_view(x, rank):
    return x.permute(0, *range(2, rank + 2), 1)


def _same_padding(x, kernel_size, strides, dilation_rate, data_format):
    """Torch's symmetric `padding=` when 'same' allows it, else an explicit pad."""
    first = 1 if data_format == "channels_last" else 2
    sizes = x.shape[first : first + len(strides)]
    pads = [_portable.same_padding(n, k, s, d) for n, k, s, d in zip(sizes, kernel_size, strides, dilation_rate)]
    if all(before == after for before, after in pads):
        return x, [before for before, _ in pads]
    # F.pad lists the last axis first; pad in the tensor's own layout so a
    # channels_last tensor stays channels_last in memory.
    widths = [0, 0] if data_format == "channels_last" else []
    for before, after in reversed(pads):
        widths += [before, after]
    return F.pad(x, widths), [0] * len(pads)


def depthwise_native(x, kernel, strides, padding, data_format, dilation_rate):
    """Torch's grouped convolution (groups = channels) on the tensor as laid out.

    1-D channels_last inputs run as 2-D (a unit height) so oneDNN's
    channels_last depthwise kernel applies to them as well. 16-bit inputs on
    the CPU run in float32 (cast in, cast back) unless `_fast_in_16_bits`.
    """
    x, kernel = ops.convert_to_tensor(x), ops.convert_to_tensor(kernel)
    strides, dilation_rate = tuple(strides), tuple(dilation_rate)
    if x.dtype in (torch.bfloat16, torch.float16) and x.device.type == "cpu" and not _fast_in_16_bits(x, strides):
        wide = depthwise_native(x.float(), kernel.float(), strides, padding, data_format, dilation_rate)
        return wide.to(x.dtype)
    rank = len(strides)
    *kernel_size, channels, multiplier = kernel.shape
    if rank == 1 and data_format == "channels_last":
        y = depthwise_native(x[:, None], kernel[None], (1,) + strides, padding, data_format, (1,) + dilation_rate)
        return y[:, 0]
    pad = [0] * rank
    if padding == "same":
        x, pad = _same_padding(x, kernel_size, strides, dilation_rate, data_format)
    # (k..., C, M) -> (C*M, 1, k...): output channel c*M + m reads input channel c.
    weight = kernel.reshape(*kernel_size, 1, channels * multiplier).permute(rank + 1, rank, *range(rank))
    if data_format == "channels_last":
        x = _to_channels_first_view(x, rank)
    y = _DepthwiseConv.apply(x, weight, strides, tuple(pad), dilation_rate)
    if data_format == "channels_last":
        y = _to_channels_last_view(y, rank)
    return y


def _fast_in_16_bits(x, strides):
    """Whether torch's CPU depthwise kernels are fast in `x`'s 16-bit dtype.

    Only bfloat16 at stride 1 on a CPU that multiplies bfloat16 (AVX512-BF16, AMX): there it
    beats float32 4x (3x3, 64 channels, forward and backward, torch 2.13). Elsewhere float32
    with two casts is 3-20x faster than the 16-bit kernels and than the shifted multiply-adds
    (stride 2 in bfloat16; float16 at any stride).
    """
    return x.dtype == torch.bfloat16 and max(strides) == 1 and _cpu_multiplies_bfloat16()


@functools.cache
def _cpu_multiplies_bfloat16():
    supported = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private; absent in older torch
    return supported is not None and supported()


class _DepthwiseConv(torch.autograd.Function):
    """torch's depthwise convolution with a backward that asks for one gradient per call.

    Autograd's convolution backward asks oneDNN for the input and the kernel
    gradient in one call, which on CPU runs 2-4x slower for large channels_last
    activations than two separate calls (`sepconv bench layer`); with a unit
    multiplier and stride the input gradient is itself a depthwise forward
    convolution of the output gradient with the flipped kernel, torch's
    fastest depthwise kernel.
    """

    @staticmethod
    def forward(ctx, x, weight, strides, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.conv = (strides, padding, dilation)
        return _CONV[len(strides)](x, weight, stride=strides, padding=padding, dilation=dilation, groups=x.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        strides, padding, dilation = ctx.conv
        rank, channels = len(strides), x.shape[1]
        dx = dweight = None
        if ctx.needs_input_grad[0]:
            dx = _depthwise_input_gradient(grad, x, weight, strides, padding, dilation)
        if ctx.needs_input_grad[1]:
            _, dweight, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, strides, padding, dilation, False, [0] * rank, channels, (False, True, False)
            )
        return dx, dweight, None, None, None


def _depthwise_input_gradient(grad, x, weight, strides, padding, dilation):
    rank, channels = len(strides), x.shape[1]
    kernel_size = weight.shape[2:]
    full = [d * (k - 1) - p for k, p, d in zip(kernel_size, padding, dilation)]
    if weight.shape[0] != channels or any(s != 1 for s in strides) or min(full) < 0:
        dx, _, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, strides, padding, dilation, False, [0] * rank, channels, (True, False, False)
        )
        return dx
    flipped = weight.flip(list(range(2, rank + 2)))
    return _CONV[rank](grad, flipped, padding=full, dilation=dilation, groups=channels)


def pointwise(x, kernel, data_format, bias=None):
    """1x1 convolution (+ bias); channels_last with a bias runs one `addmm`.

    The bias is added inside the GEMM: no extra pass over the output.
    channels_first stays a matmul between two transposed views
    (`_portable.pointwise`), which measured as fast as torch's 1x1
    convolution in NCHW.
    """
    if data_format != "channels_last" or bias is None:
        return _portable.pointwise(x, kernel, data_format, bias)
    x, kernel, bias = ops.convert_to_tensor(x), ops.convert_to_tensor(kernel), ops.convert_to_tensor(bias)
    in_channels, filters = kernel.shape[-2], kernel.shape[-1]
    rows = torch.addmm(bias, x.reshape(-1, in_channels), kernel.reshape(in_channels, filters))
    return rows.reshape(*x.shape[:-1], filters)


_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def max_pool(x, pool_size, strides, padding, data_format):
    """Max pooling on the tensor as laid out, or None where torch cannot.

    Keras' torch backend copies channels_last inputs to NCHW, pools there
    (torch's slowest pooling kernel) and hands back a permuted NCHW tensor,
    which makes the next elementwise op, and every gradient behind it, run
    on mismatched layouts. A permuted view pools with torch's channels_last
    kernel and returns a contiguous channels_last tensor.

    'same' padding runs here only where it is symmetric (torch pads with
    -inf on both sides); asymmetric cases return None for the portable path.
    """
    x = ops.convert_to_tensor(x)
    rank = len(pool_size)
    pad = 0
    if padding == "same":
        first = 1 if data_format == "channels_last" else 2
        sizes = x.shape[first : first + rank]
        pads = [_portable.same_padding(n, k, s, 1) for n, k, s in zip(sizes, pool_size, strides)]
        if any(before != after or 2 * before > k for (before, after), k in zip(pads, pool_size)):
            return None
        pad = [before for before, _ in pads]
    if data_format == "channels_last":
        if rank == 1:
            # 1-D as 2-D with a unit height: torch has no channels_last 1-D kernel.
            y = max_pool(x[:, None], (1, *pool_size), (1, *strides), padding, data_format)
            return None if y is None else y[:, 0]
        x = _to_channels_first_view(x, rank)
    y = _MAX_POOL[rank](x, pool_size, strides, padding=pad)
    if data_format == "channels_last":
        y = _to_channels_last_view(y, rank)
    return y


class _BatchNormReLU(torch.autograd.Function):
    """`relu(batch_norm(x))` in training, the ReLU applied in place on the normalized tensor.

    The unfused pair writes a second tensor the size of `x` and keeps both for the
    gradient; here the ReLU's output is the only one kept, its mask read back in the
    gradient before torch's batch-norm backward kernel.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, epsilon):
        y, mean, invstd = torch.native_batch_norm(x, gamma, beta, running_mean, running_var, True, 1.0, epsilon)
        y.clamp_(min=0.0)
        ctx.save_for_backward(x, gamma, mean, invstd, y)
        ctx.epsilon, ctx.affine = epsilon, (gamma is not None, beta is not None)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, gamma, mean, invstd, y = ctx.saved_tensors
        grad = torch.ops.aten.threshold_backward(grad, y, 0.0)
        dx, dgamma, dbeta = torch.ops.aten.native_batch_norm_backward(
            grad, x, gamma, None, None, mean, invstd, True, ctx.epsilon, [True, *ctx.affine]
        )
        return dx, dgamma, dbeta, None, None, None


class _NativeBatchNorm(torch.autograd.Function):
    """`batch_norm(x)` (through a ReLU when `relu`) with the C kernel of `_native`, x (rows, channels)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, epsilon, relu):
        y, mean, invstd, variance = _native.batch_norm_forward(x, gamma, beta, epsilon, relu)
        # Without the ReLU the backward needs no mask: `x` stands in for `y` and is not read.
        ctx.save_for_backward(x, gamma, mean, invstd, y if relu else None)
        ctx.relu, ctx.affine = relu, (gamma is not None, beta is not None)
        ctx.mark_non_differentiable(mean, variance)
        return y, mean, variance

    @staticmethod
    def backward(ctx, grad, _mean, _variance):
        x, gamma, mean, invstd, y = ctx.saved_tensors
        dx, dgamma, dbeta = _native.batch_norm_backward(
            grad.contiguous(), x if y is None else y, x, gamma, mean, invstd, ctx.relu
        )
        return dx, dgamma if ctx.affine[0] else None, dbeta if ctx.affine[1] else None, None, None


def _native_applies(x, axis):
    """float32 channels-last on the CPU, contiguous, and the C kernel built."""
    return (
        axis == x.dim() - 1
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.is_contiguous()
        and _native.library() is not None
    )


def batch_norm_training(x, gamma, beta, axis, epsilon, relu=False):
    """Training-mode batch normalization with torch's fused kernel, or None.

    `torch.nn.functional.batch_norm` computes the statistics and the normalization in
    one kernel (and the gradient in one more), on the tensor's own memory layout: a
    channels_last (N, H, W, C) tensor is handed over as its (N, C, H, W) view, which is
    torch's channels_last format. Returns `(y, mean, variance)` with the biased variance,
    as `keras.ops.moments` gives it; None where it does not apply. `relu`: `y` is
    `relu(batch_norm(x))`, the ReLU fused in (`_BatchNormReLU`). A contiguous float32
    channels_last `x` of any rank on the CPU goes to the C kernel (`_native`) where it is built.
    """
    rank = x.dim()
    axis = axis % rank
    channels = x.shape[axis]
    count = x.numel() // max(channels, 1)
    if count <= 1:  # torch refuses one value per channel; Keras' composite returns beta
        return None
    if _native_applies(x, axis):  # any rank: the channels-last rows are the same (count, channels) matrix
        y, mean, variance = _NativeBatchNorm.apply(x.reshape(count, channels), gamma, beta, epsilon, relu)
        return y.reshape(x.shape), mean, variance
    if rank == 4 and x.dtype == torch.float16:  # float32 statistics, as Keras computes them
        fused = batch_norm_training(x.float(), gamma, beta, axis, epsilon, relu=relu)
        return None if fused is None else (fused[0].to(x.dtype), *fused[1:])
    # bfloat16 x with float32 parameters and statistics is one of torch's own mixed-type
    # kernels: 8 ms against 51 with casts around the float32 one (forward and backward,
    # (128, 64, 32, 32), this CPU).
    if rank != 4 or axis not in (1, 3) or x.dtype not in (torch.float32, torch.bfloat16):
        return None
    view = x.permute(0, 3, 1, 2) if axis == 3 else x
    # Fresh running buffers with momentum 1 receive exactly this batch's mean and
    # (Bessel-corrected) variance: the statistics without a second pass.
    mean = torch.zeros(channels, dtype=torch.float32, device=x.device)
    variance = torch.ones(channels, dtype=torch.float32, device=x.device)
    if relu:
        y = _BatchNormReLU.apply(view, gamma, beta, mean, variance, epsilon)
    else:
        y = F.batch_norm(view, mean, variance, gamma, beta, training=True, momentum=1.0, eps=epsilon)
    variance = variance * ((count - 1) / max(count, 1))
    return (y.permute(0, 2, 3, 1) if axis == 3 else y), mean, variance


def batch_norm_inference(x, gamma, beta, mean, variance, axis, epsilon, relu=False):
    """`x` normalized with the given statistics (then ReLU'd when `relu`) by the C kernel, or None.

    One pass where Keras' composite makes several; only where `_native` applies and no
    gradient is asked for (a frozen BatchNorm inside a model being fine-tuned keeps Keras'
    differentiable path).
    """
    needs_gradient = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, gamma, beta))
    if needs_gradient or not _native_applies(x, axis % x.dim()):
        return None
    invstd = torch.rsqrt(variance.double() + epsilon)
    return _native.normalize(x.reshape(-1, x.shape[-1]), mean, invstd, gamma, beta, relu).reshape(x.shape)
