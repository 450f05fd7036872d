"""`sepconv bench`: how fast, next to Keras and a memory copy, and why not faster.

`sepconv bench layer` times depthwise, pointwise, separable and regular
convolutions at the tutorial VGG's shapes; `sepconv bench model` times
training steps and inference of registry models; `sepconv bench tune`
measures the depthwise implementations on a model's calls and caches the
fastest for "auto". Timings depend on the backend (`KERAS_BACKEND`) and on
whatever else the machine runs: compare ratios from one run, not numbers
from different runs.
"""

import json
import pathlib
import sys

from rich.console import Console

from sepconv import kernels
from sepconv.bench import _layer, _model, _render, _tune
from sepconv.cli._count import parse_positive


def _common(parser, repeats=7):
    parser.add_argument("--batch-size", default="128", metavar="N", help="samples per call (default 128)")
    parser.add_argument(
        "--repeats", default=str(repeats), metavar="N", help=f"timed calls per figure (default {repeats})"
    )
    parser.add_argument(
        "--warmup", default="2", metavar="N", help="untimed calls first, compilation included (default 2)"
    )
    parser.add_argument(
        "--implementation",
        default="auto",
        choices=kernels.available_implementations(),
        help="sepconv depthwise implementation (default auto)",
    )
    parser.add_argument(
        "--matmul-size", default="2048", metavar="N", help="side of the square matmul giving the peak (default 2048)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--output", metavar="FILE", help="also save the JSON result to FILE")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "bench", help="time layers and models against Keras and the hardware", description=__doc__
    )
    commands = parser.add_subparsers(dest="bench_command", metavar="WHAT")
    commands.required = True

    layer = commands.add_parser("layer", help="one convolution: sepconv vs Keras vs a copy, with its roofline")
    _common(layer)
    layer.add_argument("--ops", nargs="+", default=list(_layer.OPS), choices=_layer.OPS, help="operations to time")
    layer.add_argument(
        "--shapes",
        nargs="+",
        default=list(_layer.SHAPES),
        metavar="HxWxC[:F]",
        help="input shapes (filters F, default C)",
    )
    layer.add_argument("--dtype", nargs="+", default=["float32"], choices=_layer.DTYPES, help="tensor dtypes")
    layer.add_argument(
        "--data-format",
        nargs="+",
        default=["channels_last"],
        choices=("channels_last", "channels_first"),
        help="data formats",
    )
    layer.add_argument(
        "--mode", nargs="+", default=list(_layer.MODES), choices=_layer.MODES, help="forward and/or forward+backward"
    )
    layer.set_defaults(func=run_layer)

    model = commands.add_parser("model", help="images/s of registry models: train step and inference")
    _common(model)
    model.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"registry model names; ratios are to the first (default: {' '.join(_model.ModelBenchConfig.models)})",
    )
    model.add_argument("--mode", nargs="+", default=list(_model.MODES), choices=_model.MODES, help="what to time")
    model.add_argument(
        "--dtype-policy",
        default="float32",
        choices=("float32", "bfloat16", "mixed_bfloat16"),
        help="Keras dtype policy (default float32)",
    )
    model.add_argument("--optimizer", default="adam", help="Keras optimizer name (default adam)")
    model.set_defaults(func=run_model)

    tune = commands.add_parser("tune", help="measure depthwise implementations on a model, cache the fastest")
    tune.add_argument("models", nargs="+", metavar="MODEL", help="registry model names")
    tune.add_argument("--batch-size", default="128", metavar="N", help="samples per call (default 128)")
    tune.add_argument("--repeats", default="7", metavar="N", help="timed calls per implementation (default 7)")
    tune.add_argument("--warmup", default="2", metavar="N", help="untimed calls first (default 2)")
    tune.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tune.add_argument("--output", metavar="FILE", help="also save the JSON result to FILE")
    tune.set_defaults(func=run_tune)
    return parser


def _warmup(text):
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = -1
    if value < 0:
        raise ValueError(f"--warmup must be a non-negative integer. Received: --warmup={text}")
    return value


def _console():
    console = Console(stderr=False)
    return console if console.is_terminal else Console(width=200)


def _progress(message):
    print(f"  {message}", file=sys.stderr, flush=True)


def _emit(args, result, tables, lines):
    if args.output:
        path = pathlib.Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = _console()
    for table in tables:
        console.print(table)
    for line in lines:
        console.print(line, highlight=False)
    return 0


def _timing_options(args):
    """The options `sepconv bench layer` and `sepconv bench model` share."""
    return dict(
        implementation=args.implementation,
        warmup=_warmup(args.warmup),
        repeats=parse_positive(args.repeats, "--repeats"),
        matmul_size=parse_positive(args.matmul_size, "--matmul-size"),
    )


def run_layer(args):
    config = _layer.LayerBenchConfig(
        ops=tuple(args.ops),
        shapes=tuple(args.shapes),
        batch_size=parse_positive(args.batch_size, "--batch-size"),
        dtypes=tuple(args.dtype),
        data_formats=tuple(args.data_format),
        modes=tuple(args.mode),
        **_timing_options(args),
    )
    result = _layer.run(config, progress=None if args.json else _progress)
    lines = [*_render.layer_summary(result), _render.environment_line(result), _render.machine_line(result)]
    return _emit(args, result, [_render.layer_table(result)], lines)


def run_model(args):
    config = _model.ModelBenchConfig(
        models=tuple(args.models) or _model.ModelBenchConfig.models,
        batch_size=parse_positive(args.batch_size, "--batch-size"),
        modes=tuple(args.mode),
        dtype_policy=args.dtype_policy,
        optimizer=args.optimizer,
        **{**_timing_options(args), "warmup": max(_warmup(args.warmup), 1)},
    )
    result = _model.run(config, progress=None if args.json else _progress)
    lines = [*_render.model_summary(result), _render.environment_line(result), _render.machine_line(result)]
    return _emit(args, result, [_render.model_table(result)], lines)


def run_tune(args):
    result = _tune.autotune(
        args.models,
        batch_size=parse_positive(args.batch_size, "--batch-size"),
        warmup=_warmup(args.warmup),
        repeats=parse_positive(args.repeats, "--repeats"),
        progress=None if args.json else _progress,
    )
    return _emit(args, result, [_render.tune_table(result)], [f"Stored in {result['cache']} for {result['device']}."])
