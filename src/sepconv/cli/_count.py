"""`sepconv count`: one regular convolution next to two depthwise separable ones.

Compares parameters and MACs of a regular convolution, a Keras-style
`SeparableConv2D` (bias on the pointwise step only) and a "tutorial"
separable block (`DepthwiseConv2D` with bias, then a 1x1 `Conv2D` with
bias), with the formulas of Howard et al. 2017, arXiv:1704.04861, Sec. 3.1
(`sepconv.analysis.compare_conv_costs`). MACs assume `padding="same"`;
biases are parameters, not MACs.
"""

from rich.table import Table

from sepconv import _options, _validation
from sepconv.cli import _args


def _size(flag):
    return _args.value_type(flag, lambda text, name: _args.parse_size(text, name))


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "count",
        help="parameters and MACs: regular conv vs depthwise separable conv",
        description=__doc__.splitlines()[0],
    )
    count = _validation.positive_int
    parser.add_argument("--in", dest="in_channels", required=True, metavar="M", help="input channels",
                        type=_args.value_type("--in", _options.parse_int, count))  # fmt: skip
    parser.add_argument("--out", dest="out_channels", required=True, metavar="N", help="output channels",
                        type=_args.value_type("--out", _options.parse_int, count))  # fmt: skip
    parser.add_argument("--kernel", required=True, metavar="K", help="kernel size: 3 or 3x3", type=_size("--kernel"))
    parser.add_argument("--depth-multiplier", default=1, metavar="m", help="depthwise channel multiplier",
                        type=_args.value_type("--depth-multiplier", _options.parse_int, count))  # fmt: skip
    parser.add_argument("--input", default=(32, 32), metavar="HxW", help="input spatial size (default 32x32)",
                        type=_size("--input"))  # fmt: skip
    parser.add_argument("--stride", default=(1, 1), metavar="S", help="stride: 2 or 2x2 (default 1)",
                        type=_size("--stride"))  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from sepconv.analysis import compare_conv_costs

    result = compare_conv_costs(
        in_channels=args.in_channels,
        out_channels=args.out_channels,
        kernel_size=args.kernel,
        input_size=args.input,
        strides=args.stride,
        depth_multiplier=args.depth_multiplier,
    )
    if args.json:
        _args.emit_json(result)
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
    console = _args.console(width=120)
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
