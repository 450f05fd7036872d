"""Trainable torch functions over the Triton kernels, and the registry entry.

`depthwise_conv2d` and `separable_conv2d` take and return NHWC torch tensors;
`depthwise_conv_triton` has the signature of the implementations registered in
`sepconv.kernels._dispatch` as "triton" (any data format, 1-D or 2-D).
"""

import torch

from sepconv.kernels.triton import _depthwise, _tuning

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _pair(value, name):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them. Received: {name}={value}")
    return pair


def _check(x, kernel, padding, activations):
    if padding not in ("valid", "same"):
        raise ValueError(f'padding must be one of "valid", "same". Received: padding={padding!r}')
    for name, value in activations.items():
        if value not in _depthwise.ACTIVATIONS:
            raise ValueError(f"{name} must be one of {_depthwise.ACTIVATIONS}. Received: {name}={value!r}")
    if x.device.type != "cuda" and not _tuning.interpreting():
        raise ValueError(
            f"The Triton depthwise kernels need CUDA tensors (or TRITON_INTERPRET=1). Received: device={x.device}"
        )
    if x.dtype not in DTYPES:
        raise TypeError(f"The Triton depthwise kernels take float32, bfloat16 or float16. Received: dtype={x.dtype}")
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != x.shape[3]:
        raise ValueError(
            "Expected an NHWC input and a (KH, KW, C, M) kernel with the same C. "
            f"Received: input_shape={tuple(x.shape)}, kernel_shape={tuple(kernel.shape)}"
        )


def _grad_mask(grad, y, activation):
    """Gradient through relu / relu6, read from their output."""
    if activation == "relu":
        return grad * (y > 0)
    if activation == "relu6":
        return grad * ((y > 0) & (y < 6))
    return grad


class DepthwiseConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, bias, strides, dilation, padding, activation):
        y = _depthwise.forward(x, kernel, bias, strides, dilation, padding, activation)
        ctx.save_for_backward(x, kernel, y if activation != "linear" else None)
        ctx.conv = (strides, dilation, padding)
        ctx.activation = activation
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y

    @staticmethod
    def backward(ctx, grad):
        x, kernel, y = ctx.saved_tensors
        strides, dilation, padding = ctx.conv
        grad = _grad_mask(grad, y, ctx.activation).contiguous()
        dx = dk = db = None
        if ctx.needs_input_grad[0]:
            dx = _depthwise.input_grad(grad, kernel, x.shape, strides, dilation, padding)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            with_bias = ctx.bias_dtype is not None and ctx.needs_input_grad[2]
            dk, db = _depthwise.weight_grad(x, grad, kernel.shape, with_bias, strides, dilation, padding)
            dk = dk.to(kernel.dtype)
            db = None if db is None else db.to(ctx.bias_dtype)
        return dx, dk, db, None, None, None, None


class SeparableConv2d(torch.autograd.Function):
    """Fused forward; the backward recomputes the depthwise output instead of
    keeping it, and runs the pointwise products with torch matmuls."""

    @staticmethod
    def forward(
        ctx, x, kernel, depthwise_bias, pointwise, bias, strides, dilation, padding, depthwise_activation, activation
    ):
        y = _depthwise.fused_forward(
            x, kernel, depthwise_bias, pointwise, bias, strides, dilation, padding, depthwise_activation, activation
        )
        ctx.save_for_backward(x, kernel, depthwise_bias, pointwise, bias, y if activation != "linear" else None)
        ctx.conv = (strides, dilation, padding)
        ctx.activations = (depthwise_activation, activation)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, kernel, depthwise_bias, pointwise, bias, y = ctx.saved_tensors
        strides, dilation, padding = ctx.conv
        depthwise_activation, activation = ctx.activations
        grad = _grad_mask(grad, y, activation)
        mid = _depthwise.forward(x, kernel, depthwise_bias, strides, dilation, padding, depthwise_activation)
        f = pointwise.shape[1]
        grad_rows = grad.reshape(-1, f)
        d_pointwise = mid.reshape(-1, mid.shape[-1]).T @ grad_rows.to(mid.dtype)
        d_bias = grad_rows.sum(0, dtype=torch.float32).to(bias.dtype) if bias is not None else None
        d_mid = (grad_rows.to(pointwise.dtype) @ pointwise.T).reshape(mid.shape)
        d_mid = _grad_mask(d_mid, mid, depthwise_activation).contiguous()
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _depthwise.input_grad(d_mid, kernel, x.shape, strides, dilation, padding)
        with_bias = depthwise_bias is not None
        dk, d_depthwise_bias = _depthwise.weight_grad(x, d_mid, kernel.shape, with_bias, strides, dilation, padding)
        dk = dk.to(kernel.dtype)
        if with_bias:
            d_depthwise_bias = d_depthwise_bias.to(depthwise_bias.dtype)
        return dx, dk, d_depthwise_bias, d_pointwise.to(pointwise.dtype), d_bias, None, None, None, None, None


def depthwise_conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1, activation="linear"):
    """NHWC depthwise convolution with fused bias and activation (autograd).

    `x`: (N, H, W, C) CUDA tensor (or CPU under TRITON_INTERPRET=1) in
    float32/bfloat16/float16; `kernel`: (KH, KW, C, M); `bias`: (C * M,) or
    None; `activation`: "linear", "relu" or "relu6". Output channel c * M + m.
    """
    strides, dilation = _pair(strides, "strides"), _pair(dilation_rate, "dilation_rate")
    _check(x, kernel, padding, {"activation": activation})
    bias = None if bias is None else bias.contiguous()
    return DepthwiseConv2d.apply(x.contiguous(), kernel.contiguous(), bias, strides, dilation, padding, activation)


def separable_conv2d(
    x, kernel, pointwise, depthwise_bias=None, bias=None, strides=1, padding="valid", dilation_rate=1,
    depthwise_activation="linear", activation="linear",
):
    """NHWC depthwise -> pointwise in one kernel (autograd): the depthwise
    output is never written to memory in the forward pass.

    `pointwise` is (C * M, F) or Keras' (1, 1, C * M, F); `bias` is (F,).
    """
    strides, dilation = _pair(strides, "strides"), _pair(dilation_rate, "dilation_rate")
    _check(x, kernel, padding, {"depthwise_activation": depthwise_activation, "activation": activation})
    pointwise = pointwise.reshape(pointwise.shape[-2], pointwise.shape[-1])
    if pointwise.shape[0] != kernel.shape[2] * kernel.shape[3]:
        raise ValueError(
            "pointwise must have C * M rows. "
            f"Received: kernel_shape={tuple(kernel.shape)}, pointwise_shape={tuple(pointwise.shape)}"
        )
    depthwise_bias = None if depthwise_bias is None else depthwise_bias.contiguous()
    bias = None if bias is None else bias.contiguous()
    return SeparableConv2d.apply(
        x.contiguous(), kernel.contiguous(), depthwise_bias, pointwise.contiguous(), bias,
        strides, dilation, padding, depthwise_activation, activation,
    )


def depthwise_conv_triton(x, kernel, strides, padding, data_format, dilation_rate):
    """Registry entry: depthwise convolution of a 1-D or 2-D torch input.

    channels_first inputs are read as channels-last memory (NCHW permuted to
    NHWC; free when the tensor already has torch.channels_last strides) and
    the NCHW-shaped result has channels_last strides. 1-D runs as height 1.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"The Triton depthwise path takes torch tensors (Keras' torch backend). Received: type(x)={type(x).__name__}"
        )
    if not isinstance(kernel, torch.Tensor):  # a Keras Variable
        import keras

        kernel = keras.ops.convert_to_tensor(kernel)
    rank = len(strides)
    if rank not in (1, 2):
        raise ValueError(
            f"The Triton depthwise path supports 1-D and 2-D inputs. Received: input_shape={tuple(x.shape)}"
        )
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f'data_format must be one of "channels_last", "channels_first". Received: data_format={data_format!r}'
        )
    if data_format == "channels_first":
        x = torch.movedim(x, 1, -1)
    if rank == 1:
        x, kernel = x.unsqueeze(1), kernel.unsqueeze(0)
        strides, dilation_rate = (1, *strides), (1, *dilation_rate)
    y = depthwise_conv2d(x, kernel, None, tuple(strides), padding, tuple(dilation_rate))
    if rank == 1:
        y = y.squeeze(1)
    return torch.movedim(y, -1, 1) if data_format == "channels_first" else y
