"""Closed-form counts against independent references.

Parameters are checked against Keras layers' own `count_params()`, MACs by
running the operation in torch on ones (see `ones_macs`), and both against
the numbers printed in the MobileNets paper (Howard et al. 2017,
arXiv:1704.04861).
"""

import math

import keras
import pytest

from sepconv import analysis

torch = pytest.importorskip("torch")
functional = torch.nn.functional


def ones_macs(fn, input_shape, weight_shape, pad=0, **kwargs):
    """MACs of `fn(input, weight)` counted by running it on ones.

    With every input value and weight equal to 1 and no bias, each output
    value is the number of products accumulated into it, so the output sum
    is the MAC count. `pad` pads the input with ones (not zeros) so that the
    taps on padding are counted too, as the closed forms do.
    Returns `(macs, output spatial size)`.
    """
    x = torch.ones(input_shape, dtype=torch.float64)
    if pad:
        x = functional.pad(x, (pad,) * 2 * (x.dim() - 2), value=1.0)
    y = fn(x, torch.ones(weight_shape, dtype=torch.float64), **kwargs)
    return int(y.sum().item()), tuple(y.shape[2:])


def keras_params(layer, input_shape):
    layer.build((1,) + tuple(input_shape))
    return layer.count_params()


# Zero initializers: the counts do not depend on values, and random ones make
# the JAX backend compile a generator for every weight shape (slow).
ZEROS = {"kernel_initializer": "zeros"}
DEPTHWISE_ZEROS = {"depthwise_initializer": "zeros"}
SEPARABLE_ZEROS = {"depthwise_initializer": "zeros", "pointwise_initializer": "zeros"}


# The worked numbers of the task: a 3x3 convolution from 3 to 64 channels.
def test_headline_numbers():
    assert analysis.conv_params(3, 64, 3) == 1_792
    assert analysis.separable_params(3, 64, 3) == 27 + 192 + 64 == 283
    assert analysis.separable_params(3, 64, 3, depthwise_bias=True) == 27 + 3 + 192 + 64 == 286


# Howard et al. 2017, Table 3: a 14x14x512 -> 14x14x512 layer with a 3x3 kernel.
def test_mobilenet_paper_table_3():
    assert analysis.conv_macs(512, 512, 3, 14) == 462_422_016  # "462 million mult-adds"
    assert analysis.conv_params(512, 512, 3, use_bias=False) == 2_359_296  # "2.36 million"
    assert analysis.separable_macs(512, 512, 3, 14) == 52_283_392  # "52.3 million"
    assert analysis.separable_params(512, 512, 3, pointwise_bias=False) == 266_752  # "0.27 million"


@pytest.mark.parametrize(
    "in_channels, out_channels, kernel_size, groups, use_bias",
    [(3, 64, 3, 1, True), (8, 16, (3, 5), 4, False), (6, 6, (1, 1), 3, True), (4, 12, 7, 2, True)],
)
def test_conv_params_match_keras(in_channels, out_channels, kernel_size, groups, use_bias):
    layer = keras.layers.Conv2D(out_channels, kernel_size, groups=groups, use_bias=use_bias, **ZEROS)
    expected = keras_params(layer, (9, 9, in_channels))
    assert analysis.conv_params(in_channels, out_channels, kernel_size, use_bias, groups) == expected


@pytest.mark.parametrize(
    "layer_class, kernel_size, input_shape",
    [(keras.layers.Conv1D, (5,), (20, 6)), (keras.layers.Conv3D, (3, 2, 1), (6, 6, 6, 6))],
)
def test_conv_params_other_ranks_match_keras(layer_class, kernel_size, input_shape):
    expected = keras_params(layer_class(10, kernel_size, **ZEROS), input_shape)
    assert analysis.conv_params(input_shape[-1], 10, kernel_size) == expected


@pytest.mark.parametrize("multiplier, use_bias", [(1, True), (3, False), (2, True)])
def test_depthwise_params_match_keras(multiplier, use_bias):
    layer = keras.layers.DepthwiseConv2D(3, depth_multiplier=multiplier, use_bias=use_bias, **DEPTHWISE_ZEROS)
    expected = keras_params(layer, (8, 8, 5))
    assert analysis.depthwise_params(5, 3, multiplier, use_bias) == expected


@pytest.mark.parametrize("in_channels, out_channels, use_bias", [(3, 64, True), (32, 16, False)])
def test_pointwise_params_match_keras(in_channels, out_channels, use_bias):
    layer = keras.layers.Conv2D(out_channels, 1, use_bias=use_bias, **ZEROS)
    expected = keras_params(layer, (4, 4, in_channels))
    assert analysis.pointwise_params(in_channels, out_channels, use_bias) == expected


@pytest.mark.parametrize(
    "in_channels, out_channels, kernel_size, multiplier",
    [(3, 64, 3, 1), (16, 8, 5, 2), (4, 6, (3, 1), 3)],
)
def test_separable_params_match_keras(in_channels, out_channels, kernel_size, multiplier):
    shape = (10, 10, in_channels)
    keras_style = keras.layers.SeparableConv2D(
        out_channels, kernel_size, depth_multiplier=multiplier, **SEPARABLE_ZEROS
    )
    assert analysis.separable_params(in_channels, out_channels, kernel_size, multiplier) == keras_params(
        keras_style, shape
    )
    depthwise = keras.layers.DepthwiseConv2D(kernel_size, depth_multiplier=multiplier, **DEPTHWISE_ZEROS)
    pointwise = keras.layers.Conv2D(out_channels, 1, **ZEROS)
    tutorial = keras_params(depthwise, shape) + keras_params(pointwise, shape[:2] + (in_channels * multiplier,))
    assert analysis.separable_params(in_channels, out_channels, kernel_size, multiplier, depthwise_bias=True) == tutorial


@pytest.mark.parametrize(
    "in_channels, out_channels, kernel_size, groups, stride, size",
    [(3, 64, 3, 1, 1, 16), (8, 16, 3, 4, 2, 15), (6, 12, (5, 3), 6, 1, 9), (4, 4, 1, 1, 3, 10)],
)
def test_conv_macs_match_torch(in_channels, out_channels, kernel_size, groups, stride, size):
    kernel = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
    expected, output = ones_macs(
        functional.conv2d,
        (1, in_channels, size, size),
        (out_channels, in_channels // groups, *kernel),
        stride=stride,
        groups=groups,
    )
    assert analysis.conv_macs(in_channels, out_channels, kernel_size, output, groups) == expected


@pytest.mark.parametrize("multiplier, stride", [(1, 1), (2, 2), (3, 1)])
def test_depthwise_and_separable_macs_match_torch(multiplier, stride):
    channels, out_channels, size = 5, 7, 12
    depthwise, output = ones_macs(
        functional.conv2d,
        (1, channels, size, size),
        (channels * multiplier, 1, 3, 3),
        pad=1,  # 'same' padding, its taps counted
        stride=stride,
        groups=channels,
    )
    assert output == (-(-size // stride),) * 2
    pointwise, _ = ones_macs(functional.conv2d, (1, channels * multiplier) + output, (out_channels, channels * multiplier, 1, 1))
    assert analysis.depthwise_macs(channels, 3, output, multiplier) == depthwise
    assert analysis.pointwise_macs(channels * multiplier, out_channels, output) == pointwise
    assert analysis.separable_macs(channels, out_channels, 3, output, multiplier) == depthwise + pointwise


@pytest.mark.parametrize("kernel_size, stride", [(3, 2), ((2, 4), 1)])
def test_conv_transpose_macs_match_torch(kernel_size, stride):
    kernel = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
    # torch's transposed weight layout is (in, out, *kernel).
    expected, _ = ones_macs(functional.conv_transpose2d, (1, 6, 5, 7), (6, 4, *kernel), stride=stride)
    assert analysis.conv_transpose_macs(6, 4, kernel_size, (5, 7)) == expected


def test_dense_macs_match_torch():
    expected = int(functional.linear(torch.ones(2, 5, 7, dtype=torch.float64), torch.ones(3, 7, dtype=torch.float64)).sum())
    assert analysis.dense_macs(7, 3, positions=10) == expected


@pytest.mark.parametrize("out_channels, kernel_size, multiplier", [(64, 3, 1), (512, 3, 1), (10, 5, 2), (32, (3, 5), 1)])
def test_cost_ratio_is_the_ratio_of_the_mac_counts(out_channels, kernel_size, multiplier):
    separable = analysis.separable_macs(16, out_channels, kernel_size, 7, multiplier)
    regular = analysis.conv_macs(16, out_channels, kernel_size, 7)
    assert analysis.cost_ratio(out_channels, kernel_size, multiplier) == pytest.approx(separable / regular, rel=1e-12)
    # Howard et al. 2017, Sec. 3.1: 1/N + 1/D_K^2 for m = 1.
    area = math.prod(kernel_size) if isinstance(kernel_size, tuple) else kernel_size**2
    assert analysis.cost_ratio(out_channels, kernel_size, multiplier) == pytest.approx(
        multiplier * (1 / out_channels + 1 / area), rel=1e-12
    )


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation",
    [(32, 3, 1, "same", 1), (31, 3, 2, "same", 1), (32, 3, 2, "valid", 1), (17, 5, 1, "valid", 2), (17, 5, 3, "valid", 1), (8, 1, 2, "valid", 1)],
)
def test_conv_output_size_matches_keras(size, kernel, stride, padding, dilation):
    layer = keras.layers.Conv2D(2, kernel, strides=stride, padding=padding, dilation_rate=dilation)
    expected = layer.compute_output_shape((1, size, size, 3))[1:3]
    assert analysis.conv_output_size(size, kernel, stride, padding, dilation) == tuple(expected)


def test_conv_output_size_with_strides_and_dilation_matches_torch():
    # Keras refuses strides > 1 together with dilation > 1; torch does not.
    y = functional.conv2d(torch.zeros(1, 1, 17, 20), torch.zeros(1, 1, 5, 3), stride=3, dilation=2)
    assert analysis.conv_output_size((17, 20), (5, 3), 3, "valid", 2) == tuple(y.shape[2:])


def test_int_sizes_broadcast_to_the_rank_of_tuples():
    assert analysis.conv_macs(2, 3, 3, (4, 5, 6)) == 27 * 2 * 3 * 120
    assert analysis.conv_macs(2, 3, (3, 1), 4) == 3 * 2 * 3 * 16
    assert analysis.depthwise_params(4, (5,), use_bias=False) == 20


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: analysis.conv_params(3, 64, 0), "kernel_size must be positive. Received: kernel_size=0"),
        (lambda: analysis.conv_params(3, 64, (0, 3)), "kernel_size must be positive. Received: kernel_size=(0, 3)"),
        (lambda: analysis.conv_params(-1, 64, 3), "in_channels must be positive. Received: in_channels=-1"),
        (
            lambda: analysis.conv_params(3.0, 64, 3),
            "in_channels must be an integer. Received: in_channels=3.0",
        ),
        (lambda: analysis.conv_params(6, 8, 3, groups=4), "divisible by groups. Received: in_channels=6, out_channels=8, groups=4"),
        (lambda: analysis.conv_macs(3, 8, 3, 0), "output_size must be positive. Received: output_size=0"),
        (
            lambda: analysis.conv_macs(3, 8, (3, 3), (4, 4, 4)),
            "same rank. Received: kernel_size=(3, 3), output_size=(4, 4, 4)",
        ),
        (
            lambda: analysis.separable_params(3, 64, 3, depth_multiplier=0),
            "depth_multiplier must be positive. Received: depth_multiplier=0",
        ),
        (lambda: analysis.cost_ratio(0, 3), "out_channels must be positive. Received: out_channels=0"),
        (
            lambda: analysis.conv_output_size(8, 3, padding="full"),
            "padding must be one of 'same', 'valid'. Received: padding='full'",
        ),
    ],
)
def test_errors(call, message):
    with pytest.raises((ValueError, TypeError)) as error:
        call()
    assert str(error.value).endswith(message)
