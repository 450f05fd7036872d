"""Portable depthwise/pointwise formulations written with `keras.ops` only.

They run on every backend and device; the backend fast paths (`_jax.py`,
`_torch.py`) reuse their helpers. `tests/test_kernels.py` checks every
implementation, forward and gradients, against numpy references.
"""

import itertools

import keras
from keras import ops


def same_padding(size, kernel, stride, dilation):
    """(before, after) zero padding of TensorFlow's 'same' rule.

    Output length is ceil(size / stride); the odd pixel goes after, as in
    `tf.nn.convolution` (which Keras follows on every backend).
    """
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def output_length(size, kernel, stride, dilation, padding):
    """Output length of a convolution along one axis ('valid' or 'same')."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    return max((size - effective) // stride + 1, 0)


def _pad_same(x, kernel_size, strides, dilation_rate, data_format):
    """Explicit 'same' zero padding, so a later 'valid' op keeps its result."""
    spatial = x.shape[1:-1] if data_format == "channels_last" else x.shape[2:]
    pads = [same_padding(n, k, s, d) for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate)]
    if data_format == "channels_last":
        return ops.pad(x, [(0, 0), *pads, (0, 0)])
    return ops.pad(x, [(0, 0), (0, 0), *pads])


def _native(x, kernel, strides, padding, data_format, dilation_rate):
    rank = len(strides)
    if rank in (1, 2):
        return ops.depthwise_conv(
            x, kernel, strides=strides, padding=padding, data_format=data_format, dilation_rate=dilation_rate
        )
    # A convolution with groups == channels is the same thing (Keras has no
    # 3-D depthwise op); channel-major output order matches the reshape.
    *spatial, channels, multiplier = kernel.shape
    grouped = ops.reshape(kernel, (*spatial, 1, channels * multiplier))
    return ops.conv(x, grouped, strides=strides, padding=padding, data_format=data_format, dilation_rate=dilation_rate)


def depthwise_native(x, kernel, strides, padding, data_format, dilation_rate):
    """The backend's own depthwise convolution (grouped convolution for 3-D).

    `kernel` has shape `kernel_size + (channels, depth_multiplier)`; output
    channel `c * depth_multiplier + m` comes from input channel `c`.
    """
    strides, dilation_rate = tuple(strides), tuple(dilation_rate)
    rank = len(strides)
    unsupported = False
    if keras.backend.backend() == "tensorflow":
        # TensorFlow's kernels reject strides > 1 together with dilation > 1,
        # and its depthwise kernel needs equal row/column strides.
        unsupported = (max(strides) > 1 and max(dilation_rate) > 1) or (rank == 2 and strides[0] != strides[1])
    if not unsupported:
        return _native(x, kernel, strides, padding, data_format, dilation_rate)
    # Stride s output == stride 1 output on the same padded input, every s-th.
    if padding == "same":
        x = _pad_same(x, kernel.shape[:rank], strides, dilation_rate, data_format)
    full = _native(x, kernel, (1,) * rank, "valid", data_format, dilation_rate)
    window = tuple(slice(None, None, s) for s in strides)
    if data_format == "channels_last":
        return full[(slice(None), *window, slice(None))]
    return full[(slice(None), slice(None), *window)]


def shifted_windows(x, kernel_shape, strides, padding, data_format, dilation_rate):
    """The input and per-tap windows of a depthwise convolution as shifted slices.

    Returns `(x, windows)`: `x` padded for 'same' and, for a depth multiplier
    M > 1, with each channel repeated M times (channel c -> c*M .. c*M+M-1);
    `windows[t]` indexes the strided slice of `x` that kernel tap `t` (taps in
    row-major order of `kernel_size`) multiplies. Works in either data format;
    needs static spatial sizes.
    """
    x = ops.convert_to_tensor(x)
    rank = len(strides)
    *kernel_size, _, multiplier = kernel_shape
    first = 1 if data_format == "channels_last" else 2
    sizes = tuple(x.shape[first : first + rank])
    if any(size is None for size in sizes):
        raise ValueError(
            f"The shifted depthwise formulation needs static spatial sizes. Received: input_shape={tuple(x.shape)}"
        )
    if padding == "same":
        pads = [same_padding(n, k, s, d) for n, k, s, d in zip(sizes, kernel_size, strides, dilation_rate)]
        if any(p != (0, 0) for p in pads):
            widths = [(0, 0), *pads, (0, 0)] if data_format == "channels_last" else [(0, 0), (0, 0), *pads]
            x = ops.pad(x, widths)
            sizes = tuple(n + a + b for n, (a, b) in zip(sizes, pads))
    if multiplier > 1:
        x = ops.repeat(x, multiplier, axis=-1 if data_format == "channels_last" else 1)
    out = [output_length(n, k, s, d, "valid") for n, k, s, d in zip(sizes, kernel_size, strides, dilation_rate)]
    lead = (slice(None),) * first
    windows = [
        lead + tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(tap, dilation_rate, out, strides))
        for tap in itertools.product(*(range(k) for k in kernel_size))
    ]
    return x, windows


def tap_weights(kernel, rank, data_format):
    """Kernel `(k..., C, M)` as `(taps, C*M)` rows, shaped to broadcast over a window."""
    taps = ops.reshape(kernel, (-1, kernel.shape[-2] * kernel.shape[-1]))
    if data_format == "channels_first":
        taps = ops.reshape(taps, (taps.shape[0], -1) + (1,) * rank)
    return taps


def depthwise_shifted(x, kernel, strides, padding, data_format, dilation_rate):
    """Depthwise convolution as a sum of shifted, strided slices times weights.

    One multiply-add per kernel tap over the whole tensor, in the tensor's
    own data format: no im2col, no grouped-convolution kernel, no transpose.
    A compiler (XLA) fuses the taps into one loop; eager backends run one
    pass per tap. Needs static spatial sizes.
    """
    strides, dilation_rate = tuple(strides), tuple(dilation_rate)
    x, windows = shifted_windows(x, kernel.shape, strides, padding, data_format, dilation_rate)
    taps = tap_weights(kernel, len(strides), data_format)
    result = None
    for index, window in enumerate(windows):
        term = x[window] * taps[index]
        result = term if result is None else result + term
    return result


def pointwise(x, kernel, data_format, bias=None):
    """1x1 convolution (+ bias): a matmul over the channel axis.

    On the (positions, channels) matrix where the spatial shape is known: from the
    rank-4 by rank-2 matmul, XLA:CPU derived a kernel gradient that first copied a
    BatchNorm's incoming gradient into a transposed layout (JAX's `vgg_mobilenet`
    trained 1.4x faster flattened; README, "BatchNorm at the speed of the convolutions").
    """
    in_channels, filters = kernel.shape[-2], kernel.shape[-1]
    matrix = ops.reshape(kernel, (in_channels, filters))
    if data_format != "channels_last":
        x = ops.moveaxis(x, 1, -1)
    spatial = tuple(x.shape[1:-1])
    if None in spatial:
        y = ops.matmul(x, matrix)
    else:
        y = ops.reshape(ops.matmul(ops.reshape(x, (-1, in_channels)), matrix), (-1, *spatial, filters))
    if data_format != "channels_last":
        y = ops.moveaxis(y, -1, 1)
    return y if bias is None else add_bias(y, bias, data_format)


def pointwise_conv1x1(x, kernel, data_format, bias=None):
    """1x1 convolution (+ bias) as a convolution op: what exporters map to ONNX `Conv`, LiteRT `CONV_2D`."""
    y = ops.conv(x, kernel, strides=1, padding="valid", data_format=data_format)
    return y if bias is None else add_bias(y, bias, data_format)


def add_bias(x, bias, data_format):
    if data_format == "channels_last":
        return x + bias
    rank = len(x.shape)
    return x + ops.reshape(bias, (1, -1) + (1,) * (rank - 2))
