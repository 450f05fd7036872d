"""`sepconv bench`: how fast, next to Keras and a memory copy, and why not faster.

`sepconv bench layer` times depthwise, pointwise, separable and regular
convolutions at the tutorial VGG's shapes; `sepconv bench model` times
training steps and inference of registry models; `sepconv bench export` times
them exported, in ONNX Runtime and LiteRT (float32 and int8), Keras alongside; `sepconv bench fit` times
real training epochs (the data pipeline included) next to the step they
repeat; `sepconv bench tune`
measures the depthwise implementations on a model's calls and caches the
fastest for "auto". Timings depend on the backend (`KERAS_BACKEND`) and on
whatever else the machine runs: compare ratios from one run, not numbers
from different runs. Flags come from the configs' fields
(`sepconv.bench.LayerBenchConfig`, `ModelBenchConfig`).
"""

import sys

from sepconv.bench import _export, _fit, _layer, _model, _render, _timing, _tune
from sepconv.cli import _args

# `tune` times implementations on a model's own calls: no implementation to force, no peak.
_TUNE_SKIP = ("implementation", "matmul_size", "seed")
# `fit` times steps in blocks of one epoch's length, after a whole warm-up epoch.
_FIT_SKIP = _fit._UNUSED


def _outputs(parser):
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--output", metavar="FILE", help="also save the JSON result to FILE")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "bench", help="time layers and models against Keras and the hardware", description=__doc__
    )
    commands = parser.add_subparsers(dest="bench_command", metavar="WHAT")
    commands.required = True

    layer = commands.add_parser("layer", help="one convolution: sepconv vs Keras vs a copy, with its roofline")
    _args.add_options(layer, _layer.LayerBenchConfig)
    _outputs(layer)
    layer.set_defaults(func=run_layer)

    model = commands.add_parser("model", help="images/s of registry models: train step and inference")
    model.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"registry model names; ratios are to the first (default: {' '.join(_model.ModelBenchConfig.models)})",
    )
    _args.add_options(model, _model.ModelBenchConfig)
    _outputs(model)
    model.set_defaults(func=run_model)

    fit = commands.add_parser("fit", help="a real training epoch (data pipeline included) next to its step")
    default_models = " ".join(_fit.FitBenchConfig.models)
    fit.add_argument("models", nargs="*", metavar="MODEL", help=f"registry model names (default: {default_models})")
    _args.add_options(fit, _fit.FitBenchConfig, skip=_FIT_SKIP)
    _outputs(fit)
    fit.set_defaults(func=run_fit)

    export = commands.add_parser("export", help="latency and throughput in ONNX Runtime and LiteRT, Keras alongside")
    default_models = " ".join(_export.ExportBenchConfig.models)
    export.add_argument("models", nargs="*", metavar="MODEL", help=f"registry model names (default: {default_models})")
    _args.add_options(export, _export.ExportBenchConfig)
    _outputs(export)
    export.set_defaults(func=run_export)

    tune = commands.add_parser("tune", help="measure depthwise implementations on a model, cache the fastest")
    tune.add_argument("models", nargs="+", metavar="MODEL", help="registry model names")
    _args.add_options(tune, _timing.TimingOptions, skip=_TUNE_SKIP)
    _outputs(tune)
    tune.set_defaults(func=run_tune)
    return parser


def _progress(message):
    print(f"  {message}", file=sys.stderr, flush=True)


def _emit(args, result, tables, lines):
    _args.emit_json(result, output=args.output, stdout=args.json)
    if args.json:
        return 0
    console = _args.console(width=200)
    for table in tables:
        console.print(table)
    for line in lines:
        console.print(line, highlight=False)
    return 0


def run_layer(args):
    config = _layer.LayerBenchConfig(**_args.options_from_args(args, _layer.LayerBenchConfig))
    result = _layer.run(config, progress=None if args.json else _progress)
    lines = [*_render.layer_summary(result), _render.environment_line(result), _render.machine_line(result)]
    return _emit(args, result, [_render.layer_table(result)], lines)


def run_model(args):
    from sepconv.models import check_model_arguments, check_model_name

    options = _args.options_from_args(args, _model.ModelBenchConfig)
    if args.models:
        options["models"] = tuple(args.models)
    names = options.get("models", _model.ModelBenchConfig.models)
    for name in names if options.get("model_kwargs") else ():  # errors that name the flags
        check_model_arguments(check_model_name(name, "MODEL"), options["model_kwargs"], argument="--model-arg")
    config = _model.ModelBenchConfig(**options)
    result = _model.run(config, progress=None if args.json else _progress)
    lines = [*_render.model_summary(result), _render.environment_line(result), _render.machine_line(result)]
    return _emit(args, result, [_render.model_table(result)], lines)


def run_fit(args):
    options = _args.options_from_args(args, _fit.FitBenchConfig, skip=_FIT_SKIP)
    if args.models:
        options["models"] = tuple(args.models)
    result = _fit.run(_fit.FitBenchConfig(**options), progress=None if args.json else _progress)
    return _emit(args, result, [_render.fit_table(result)], [_render.environment_line(result)])


def run_export(args):
    options = _args.options_from_args(args, _export.ExportBenchConfig)
    if args.models:
        options["models"] = tuple(args.models)
    result = _export.run(_export.ExportBenchConfig(**options), progress=None if args.json else _progress)
    tables = [_render.export_table(result)] + [_render.profile_table(result, name) for name in result["profiles"]]
    return _emit(args, result, tables, [_render.environment_line(result)])


def run_tune(args):
    options = _timing.TimingOptions(**_args.options_from_args(args, _timing.TimingOptions, skip=_TUNE_SKIP))
    result = _tune.autotune(
        args.models,
        batch_size=options.batch_size,
        warmup=options.warmup,
        repeats=options.repeats,
        progress=None if args.json else _progress,
    )
    return _emit(args, result, [_render.tune_table(result)], [f"Stored in {result['cache']} for {result['device']}."])
