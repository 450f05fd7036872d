"""Cost of one convolution: regular next to depthwise separable, with the formulas shown."""

import math

from sepconv.analysis import _formulas
from sepconv.analysis._counting import MAC_CONVENTION


def compare_conv_costs(in_channels, out_channels, kernel_size, input_size, strides=(1, 1), depth_multiplier=1):
    """A regular convolution next to two depthwise separable ones, as a JSON-ready dict.

    Variants: a regular convolution, Keras' `SeparableConv2D` (bias on the pointwise step
    only) and a `DepthwiseConv2D` with bias followed by a 1x1 `Conv2D` with bias (the Keras
    tutorial's block), each with its parameters, MACs, the formulas with the numbers put
    in, and the ratio to the regular one. Formulas: Howard et al. 2017, MobileNets,
    arXiv:1704.04861, Sec. 3.1. MACs assume `padding="same"`; biases are parameters, not MACs.
    """
    m, n, mult = in_channels, out_channels, depth_multiplier
    output = _formulas.conv_output_size(input_size, kernel_size, strides, padding="same")
    area, positions = math.prod(kernel_size), math.prod(output)
    k = "x".join(str(s) for s in kernel_size)
    f = "x".join(str(s) for s in output)
    variants = [
        {
            "name": "regular conv",
            "params": _formulas.conv_params(m, n, kernel_size),
            "macs": _formulas.conv_macs(m, n, kernel_size, output),
            "params_formula": f"K*M*N + N = {area}*{m}*{n} + {n}",
            "macs_formula": f"K*M*N*F = {area}*{m}*{n}*{positions}",
        },
        {
            "name": "separable, Keras SeparableConv2D",
            "params": _formulas.separable_params(m, n, kernel_size, mult),
            "macs": _formulas.separable_macs(m, n, kernel_size, output, mult),
            "params_formula": f"K*M*m + M*m*N + N = {area}*{m}*{mult} + {m}*{mult}*{n} + {n}",
            "macs_formula": f"(K*M*m + M*m*N)*F = ({area}*{m}*{mult} + {m}*{mult}*{n})*{positions}",
        },
        {
            "name": "separable, DepthwiseConv2D + 1x1 Conv2D",
            "params": _formulas.separable_params(m, n, kernel_size, mult, depthwise_bias=True),
            "macs": _formulas.separable_macs(m, n, kernel_size, output, mult),
            "params_formula": (
                f"K*M*m + M*m + M*m*N + N = {area}*{m}*{mult} + {m}*{mult} + {m}*{mult}*{n} + {n}"
            ),
            "macs_formula": f"(K*M*m + M*m*N)*F = ({area}*{m}*{mult} + {m}*{mult}*{n})*{positions}",
        },
    ]
    for variant in variants:
        variant["params_ratio"] = variant["params"] / variants[0]["params"]
        variant["macs_ratio"] = variant["macs"] / variants[0]["macs"]
    return {
        "in_channels": m,
        "out_channels": n,
        "kernel_size": list(kernel_size),
        "depth_multiplier": mult,
        "input_size": list(input_size),
        "strides": list(strides),
        "padding": "same",
        "output_size": list(output),
        "variants": variants,
        "cost_ratio": _formulas.cost_ratio(n, kernel_size, mult),
        "cost_ratio_formula": f"m*(1/N + 1/K) = {mult}*(1/{n} + 1/{area})",
        "legend": f"K = kernel area ({k}), M = in, N = out, m = depth multiplier, F = output positions ({f})",
        "convention": MAC_CONVENTION,
        "source": "Howard et al. 2017, MobileNets, arXiv:1704.04861, Sec. 3.1",
    }
