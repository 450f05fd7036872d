"""Parameters and MACs of one convolution before and after conversion.

Counted with the closed forms of `sepconv.analysis` (Howard et al. 2017,
arXiv:1704.04861, Sec. 3.1): a MAC is one multiply-accumulate of a kernel
weight; biases are parameters, not MACs. MACs are for one sample and add up
over every call of a shared layer; the converted layer has no depthwise bias.
"""

from sepconv import analysis

__all__ = ["conv_costs", "output_sizes", "separable_costs"]


def _in_channels(layer):
    return layer.kernel.shape[-2]


def output_sizes(layer, rows):
    """Spatial output size of each call, from `sepconv.analysis` profile rows."""
    sizes = []
    for row in rows:
        shape = row.output_shapes[0]
        sizes.append(tuple(shape[1:-1] if layer.data_format == "channels_last" else shape[2:]))
    return sizes


def conv_costs(layer, sizes):
    """`(params, macs)` of a Keras `Conv1D`/`Conv2D`; `macs` is None if `sizes` is."""
    channels, kernel = _in_channels(layer), layer.kernel_size
    params = analysis.conv_params(channels, layer.filters, kernel, use_bias=layer.use_bias)
    if sizes is None:
        return params, None
    return params, sum(analysis.conv_macs(channels, layer.filters, kernel, size) for size in sizes)


def separable_costs(layer, sizes, rank):
    """`(params, macs)` of the depthwise separable layer of depth multiplier `rank`."""
    channels, kernel = _in_channels(layer), layer.kernel_size
    params = analysis.separable_params(
        channels, layer.filters, kernel, rank, depthwise_bias=False, pointwise_bias=layer.use_bias
    )
    if sizes is None:
        return params, None
    return params, sum(analysis.separable_macs(channels, layer.filters, kernel, size, rank) for size in sizes)
