"""`sepconv count`: one regular convolution next to two depthwise separable ones.

Compares parameters and MACs of a regular convolution, a Keras-style
`SeparableConv2D` (bias on the pointwise step only) and a "tutorial"
separable block (`DepthwiseConv2D` with bias, then a 1x1 `Conv2D` with
bias), with the formulas of Howard et al. 2017, arXiv:1704.04861, Sec. 3.1.
MACs assume `padding="same"`; biases are parameters, not MACs.
"""

import json
import math

from rich.console import Console
from rich.table import Table

from sepconv import analysis


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "count",
        help="parameters and MACs: regular conv vs depthwise separable conv",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--in", dest="in_channels", required=True, metavar="M", help="input channels")
    parser.add_argument("--out", dest="out_channels", required=True, metavar="N", help="output channels")
    parser.add_argument("--kernel", required=True, metavar="K", help="kernel size: 3 or 3x3")
    parser.add_argument("--depth-multiplier", default="1", metavar="m", help="depthwise channel multiplier")
    parser.add_argument("--input", default="32x32", metavar="HxW", help="input spatial size (default 32x32)")
    parser.add_argument("--stride", default="1", metavar="S", help="stride: 2 or 2x2 (default 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


def parse_positive(text, flag):
    """Parses a positive int from a command-line value."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value <= 0:
        raise ValueError(f"{flag} must be a positive integer. Received: {flag}={text}")
    return value


def parse_size(text, flag, rank=2):
    """Parses "32" or "32x32" into a tuple of `rank` positive ints."""
    parts = str(text).lower().split("x")
    if len(parts) not in (1, rank):
        raise ValueError(f"{flag} must be N or {'x'.join(['N'] * rank)}. Received: {flag}={text}")
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        sizes = ()
    if not sizes or any(size <= 0 for size in sizes):
        raise ValueError(f"{flag} must be positive integers joined by 'x'. Received: {flag}={text}")
    return sizes * rank if len(sizes) == 1 else sizes


def count(in_channels, out_channels, kernel_size, input_size, strides=(1, 1), depth_multiplier=1):
    """The comparison as a JSON-ready dict (see the module docstring)."""
    m, n, mult = in_channels, out_channels, depth_multiplier
    output = analysis.conv_output_size(input_size, kernel_size, strides, padding="same")
    area, positions = math.prod(kernel_size), math.prod(output)
    k = "x".join(str(s) for s in kernel_size)
    f = "x".join(str(s) for s in output)
    variants = [
        {
            "name": "regular conv",
            "params": analysis.conv_params(m, n, kernel_size),
            "macs": analysis.conv_macs(m, n, kernel_size, output),
            "params_formula": f"K*M*N + N = {area}*{m}*{n} + {n}",
            "macs_formula": f"K*M*N*F = {area}*{m}*{n}*{positions}",
        },
        {
            "name": "separable, Keras SeparableConv2D",
            "params": analysis.separable_params(m, n, kernel_size, mult),
            "macs": analysis.separable_macs(m, n, kernel_size, output, mult),
            "params_formula": f"K*M*m + M*m*N + N = {area}*{m}*{mult} + {m}*{mult}*{n} + {n}",
            "macs_formula": f"(K*M*m + M*m*N)*F = ({area}*{m}*{mult} + {m}*{mult}*{n})*{positions}",
        },
        {
            "name": "separable, DepthwiseConv2D + 1x1 Conv2D",
            "params": analysis.separable_params(m, n, kernel_size, mult, depthwise_bias=True),
            "macs": analysis.separable_macs(m, n, kernel_size, output, mult),
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
        "cost_ratio": analysis.cost_ratio(n, kernel_size, mult),
        "cost_ratio_formula": f"m*(1/N + 1/K) = {mult}*(1/{n} + 1/{area})",
        "legend": f"K = kernel area ({k}), M = in, N = out, m = depth multiplier, F = output positions ({f})",
        "convention": analysis.MAC_CONVENTION,
        "source": "Howard et al. 2017, MobileNets, arXiv:1704.04861, Sec. 3.1",
    }


def run(args):
    result = count(
        in_channels=parse_positive(args.in_channels, "--in"),
        out_channels=parse_positive(args.out_channels, "--out"),
        kernel_size=parse_size(args.kernel, "--kernel"),
        input_size=parse_size(args.input, "--input"),
        strides=parse_size(args.stride, "--stride"),
        depth_multiplier=parse_positive(args.depth_multiplier, "--depth-multiplier"),
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    table = Table(
        title=(
            f"{result['in_channels']} -> {result['out_channels']}, kernel "
            f"{'x'.join(map(str, result['kernel_size']))}, input "
            f"{'x'.join(map(str, result['input_size']))}, stride "
            f"{'x'.join(map(str, result['strides']))}, padding same"
        )
    )
    for header in ("Variant", "Params", "MACs", "Params / regular", "MACs / regular"):
        table.add_column(header, justify="left" if header == "Variant" else "right")
    for variant in result["variants"]:
        table.add_row(
            variant["name"],
            f"{variant['params']:,}",
            f"{variant['macs']:,}",
            f"{variant['params_ratio']:.4f}",
            f"{variant['macs_ratio']:.4f}",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(table)
    console.print(result["legend"], highlight=False)
    for variant in result["variants"]:
        console.print(f"{variant['name']}:", highlight=False)
        console.print(f"  params = {variant['params_formula']} = {variant['params']:,}", highlight=False)
        console.print(f"  MACs   = {variant['macs_formula']} = {variant['macs']:,}", highlight=False)
    console.print(
        f"MAC ratio separable / regular = {result['cost_ratio_formula']} = {result['cost_ratio']:.4f} "
        f"({result['source']})",
        highlight=False,
    )
    console.print(result["convention"], highlight=False)
    return 0
