"""Closed-form parameter and MAC counts for convolutions.

Notation follows Howard et al. 2017, "MobileNets: Efficient Convolutional
Neural Networks for Mobile Vision Applications", arXiv:1704.04861, Sec. 3.1:
``D_K`` is the kernel side, ``M`` the input channels, ``N`` the output
channels, ``D_F`` the side of the output feature map; ``m`` is the depth
multiplier (channels each input channel expands to in the depthwise step).

Convention: a MAC is one multiply-accumulate of a kernel weight with an input
value. Bias adds are not MACs (they are parameters). FLOPs = 2 x MACs.

Sizes (`kernel_size`, `output_size`, `input_size`) are an int or a tuple of
ints. An int `kernel_size` means a square 2-D kernel (``D_K x D_K``) unless a
tuple size of another rank is given next to it, in which case the int is
repeated to that rank (as Keras layers do).
"""

import math

from sepconv import _validation

__all__ = [
    "conv_params",
    "conv_macs",
    "conv_transpose_macs",
    "depthwise_params",
    "depthwise_macs",
    "pointwise_params",
    "pointwise_macs",
    "separable_params",
    "separable_macs",
    "dense_macs",
    "cost_ratio",
    "conv_output_size",
]


def _size_tuple(value, name):
    if isinstance(value, (tuple, list)):
        if not value:
            raise ValueError(f"{name} must not be empty. Received: {name}={value!r}")
        return _validation.int_tuple(value, len(value), name)
    return (_validation.positive_int(value, name),)


def _sizes(kernel_size, other, other_name):
    """Returns (kernel tuple, other tuple) of one rank, repeating ints."""
    kernel = _size_tuple(kernel_size, "kernel_size")
    sizes = _size_tuple(other, other_name)
    kernel_is_int = not isinstance(kernel_size, (tuple, list))
    other_is_int = not isinstance(other, (tuple, list))
    if kernel_is_int and other_is_int:
        return kernel * 2, sizes * 2
    if kernel_is_int:
        return kernel * len(sizes), sizes
    if other_is_int:
        return kernel, sizes * len(kernel)
    if len(kernel) != len(sizes):
        raise ValueError(
            f"kernel_size and {other_name} must have the same rank. "
            f"Received: kernel_size={tuple(kernel_size)}, {other_name}={tuple(other)}"
        )
    return kernel, sizes


def _kernel_area(kernel_size):
    kernel = _size_tuple(kernel_size, "kernel_size")
    if not isinstance(kernel_size, (tuple, list)):
        kernel = kernel * 2
    return math.prod(kernel)


def _check_groups(in_channels, out_channels, groups):
    _validation.positive_int(groups, "groups")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            "in_channels and out_channels must both be divisible by groups. "
            f"Received: in_channels={in_channels}, out_channels={out_channels}, groups={groups}"
        )


def conv_params(in_channels, out_channels, kernel_size, use_bias=True, groups=1):
    """Parameters of a standard (grouped) convolution.

    ``D_K^2 * (M / g) * N + N`` (bias only if `use_bias`): each of the ``N``
    filters spans the ``M / g`` input channels of its group (Howard et al.
    2017, arXiv:1704.04861, Sec. 3.1, with ``g = 1``; grouping as in Keras
    `Conv2D(groups=g)`). Example: 3x3, 3 -> 64 gives 27 * 64 + 64 = 1,792.
    """
    _validation.positive_int(in_channels, "in_channels")
    _validation.positive_int(out_channels, "out_channels")
    _check_groups(in_channels, out_channels, groups)
    weights = _kernel_area(kernel_size) * (in_channels // groups) * out_channels
    return weights + (out_channels if use_bias else 0)


def conv_macs(in_channels, out_channels, kernel_size, output_size, groups=1):
    """MACs of a standard (grouped) convolution.

    ``D_K^2 * (M / g) * N * D_F^2``: one ``D_K^2 * M / g`` dot product per
    output value (Howard et al. 2017, arXiv:1704.04861, Sec. 3.1, eq. 2 with
    ``g = 1``). `output_size` is the spatial size of the output feature map.
    """
    _validation.positive_int(in_channels, "in_channels")
    _validation.positive_int(out_channels, "out_channels")
    _check_groups(in_channels, out_channels, groups)
    kernel, output = _sizes(kernel_size, output_size, "output_size")
    return math.prod(kernel) * (in_channels // groups) * out_channels * math.prod(output)


def conv_transpose_macs(in_channels, out_channels, kernel_size, input_size):
    """MACs of a transposed convolution, counted on its input.

    ``D_K^2 * M * N * H_in * W_in``: every input value is multiplied into a
    ``D_K x D_K x N`` patch of the output (Dumoulin & Visin 2016, "A guide to
    convolution arithmetic for deep learning", arXiv:1603.07285, Sec. 4).
    Products that `padding="same"` later crops away are still counted.
    """
    _validation.positive_int(in_channels, "in_channels")
    _validation.positive_int(out_channels, "out_channels")
    kernel, inputs = _sizes(kernel_size, input_size, "input_size")
    return math.prod(kernel) * in_channels * out_channels * math.prod(inputs)


def depthwise_params(in_channels, kernel_size, depth_multiplier=1, use_bias=True):
    """Parameters of a depthwise convolution.

    ``D_K^2 * M * m`` weights, plus ``M * m`` biases if `use_bias` (the
    default of Keras `DepthwiseConv2D`): one ``D_K x D_K`` filter per input
    channel and multiplier (Howard et al. 2017, arXiv:1704.04861, Sec. 3.1).
    """
    _validation.positive_int(in_channels, "in_channels")
    _validation.positive_int(depth_multiplier, "depth_multiplier")
    channels = in_channels * depth_multiplier
    return _kernel_area(kernel_size) * channels + (channels if use_bias else 0)


def depthwise_macs(in_channels, kernel_size, output_size, depth_multiplier=1):
    """MACs of a depthwise convolution: ``D_K^2 * M * m * D_F^2``.

    Howard et al. 2017, arXiv:1704.04861, Sec. 3.1, eq. 4 (with ``m = 1``).
    """
    _validation.positive_int(in_channels, "in_channels")
    _validation.positive_int(depth_multiplier, "depth_multiplier")
    kernel, output = _sizes(kernel_size, output_size, "output_size")
    return math.prod(kernel) * in_channels * depth_multiplier * math.prod(output)


def pointwise_params(in_channels, out_channels, use_bias=True):
    """Parameters of a pointwise (1x1) convolution: ``M * N (+ N)``.

    Each of the ``N`` filters has shape ``(1, 1, M)`` (Howard et al. 2017,
    arXiv:1704.04861, Sec. 3.1).
    """
    _validation.positive_int(in_channels, "in_channels")
    _validation.positive_int(out_channels, "out_channels")
    return in_channels * out_channels + (out_channels if use_bias else 0)


def pointwise_macs(in_channels, out_channels, output_size):
    """MACs of a pointwise (1x1) convolution: ``M * N * D_F^2``.

    Howard et al. 2017, arXiv:1704.04861, Sec. 3.1 (second term of eq. 5).
    An int `output_size` means a square ``D_F x D_F`` map.
    """
    _validation.positive_int(in_channels, "in_channels")
    _validation.positive_int(out_channels, "out_channels")
    output = _size_tuple(output_size, "output_size")
    if not isinstance(output_size, (tuple, list)):
        output = output * 2
    return in_channels * out_channels * math.prod(output)


def separable_params(
    in_channels,
    out_channels,
    kernel_size,
    depth_multiplier=1,
    depthwise_bias=False,
    pointwise_bias=True,
):
    """Parameters of a depthwise separable convolution.

    ``D_K^2 * M * m + M * m * N`` weights, plus ``M * m`` depthwise biases
    (if `depthwise_bias`) and ``N`` pointwise biases (if `pointwise_bias`).
    The defaults match Keras `SeparableConv2D` (one bias, after the pointwise
    step). Example, 3x3, 3 -> 64: 27 + 192 + 64 = 283; with a depthwise bias
    as well (a `DepthwiseConv2D` followed by a 1x1 `Conv2D`): 286.
    """
    _validation.positive_int(depth_multiplier, "depth_multiplier")
    depthwise = depthwise_params(in_channels, kernel_size, depth_multiplier, use_bias=depthwise_bias)
    pointwise = pointwise_params(in_channels * depth_multiplier, out_channels, use_bias=pointwise_bias)
    return depthwise + pointwise


def separable_macs(in_channels, out_channels, kernel_size, output_size, depth_multiplier=1):
    """MACs of a depthwise separable convolution.

    ``D_K^2 * M * m * D_F^2 + M * m * N * D_F^2`` (Howard et al. 2017,
    arXiv:1704.04861, Sec. 3.1, eq. 5 with ``m = 1``). The depthwise step
    applies the strides, so both terms use the output size ``D_F``.
    """
    kernel, output = _sizes(kernel_size, output_size, "output_size")
    depthwise = depthwise_macs(in_channels, kernel, output, depth_multiplier)
    pointwise = pointwise_macs(in_channels * depth_multiplier, out_channels, output)
    return depthwise + pointwise


def dense_macs(in_features, out_features, positions=1):
    """MACs of a dense layer: ``in * out`` per position.

    A dense layer applied to an input of shape ``(..., in)`` repeats the
    ``in x out`` matrix product at each of the `positions` leading
    positions (the product of all leading dimensions, batch included).
    """
    _validation.positive_int(in_features, "in_features")
    _validation.positive_int(out_features, "out_features")
    _validation.positive_int(positions, "positions")
    return in_features * out_features * positions


def cost_ratio(out_channels, kernel_size, depth_multiplier=1):
    """MACs of a separable convolution over those of a standard one.

    ``m * (1 / N + 1 / D_K^2)``: eq. 5 divided by eq. 2 of Howard et al.
    2017, arXiv:1704.04861, Sec. 3.1, which gives ``1/N + 1/D_K^2`` for
    ``m = 1``; a depth multiplier ``m`` scales both separable terms by ``m``.
    It does not depend on ``M`` or ``D_F``. Biases are not included.
    """
    _validation.positive_int(out_channels, "out_channels")
    _validation.positive_int(depth_multiplier, "depth_multiplier")
    return depth_multiplier * (1 / out_channels + 1 / _kernel_area(kernel_size))


def conv_output_size(input_size, kernel_size, strides=1, padding="same", dilation_rate=1):
    """Spatial output size of a convolution, per dimension.

    ``same``: ``ceil(n / s)``; ``valid``: ``floor((n - d * (k - 1) - 1) / s) + 1``
    (the rules of Keras `Conv2D`; Dumoulin & Visin 2016, arXiv:1603.07285,
    relationships 5 and 6 with dilation). Returns a tuple with the rank of
    `input_size` (an int `input_size` means a square 2-D map).
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be one of 'same', 'valid'. Received: padding={padding!r}")
    kernel, inputs = _sizes(kernel_size, input_size, "input_size")
    rank = len(inputs)
    strides = _size_tuple(strides, "strides")
    strides = strides * rank if len(strides) == 1 else strides
    dilation = _size_tuple(dilation_rate, "dilation_rate")
    dilation = dilation * rank if len(dilation) == 1 else dilation
    if len(strides) != rank or len(dilation) != rank:
        raise ValueError(
            f"strides and dilation_rate must have the rank of input_size ({rank}). "
            f"Received: strides={strides}, dilation_rate={dilation}"
        )
    sizes = []
    for n, k, s, d in zip(inputs, kernel, strides, dilation):
        if padding == "same":
            sizes.append(-(-n // s))
        else:
            span = d * (k - 1) + 1
            if span > n:
                raise ValueError(
                    "The dilated kernel is larger than the input with padding='valid'. "
                    f"Received: input_size={tuple(inputs)}, kernel_size={tuple(kernel)}"
                )
            sizes.append((n - span) // s + 1)
    return tuple(sizes)
