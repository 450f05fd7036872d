"""`sepconv train`: train one model on CIFAR-10 into a run folder with a report.

Settings come from a recipe (`--recipe tutorial|strong`), then a preset (`--preset
quick`), then the flags given. Every `TrainConfig` field has a flag (generated from the
field: name, help and check); `sepconv compare` shares them all.
"""

import os
import sys

from sepconv.cli import _args


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train one model on CIFAR-10; writes a run folder with a report",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("model", nargs="?", metavar="MODEL", help="a name from sepconv.models.list_models()")
    add_run_flags(parser)
    parser.set_defaults(func=run)
    return parser


def add_run_flags(parser):
    """The flags `train` and `compare` share: one per `TrainConfig` field, then the run's own."""
    from sepconv.training import DistributionConfig, TrainConfig

    # Shown defaults are the tutorial recipe's; `--recipe strong` brings its own.
    _args.add_options(parser, TrainConfig, default_label="tutorial:")
    # Where it trains (not what it computes): also allowed with --resume.
    _args.add_options(parser, DistributionConfig)
    parser.add_argument("--out", metavar="DIR", help="run folder (default runs/<timestamp>-<models>)")
    parser.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR with its saved settings")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")


def run(args):
    if args.model is None and not args.resume:
        raise ValueError("MODEL is required unless --resume DIR is given. Received: MODEL=None")
    return execute(args, [args.model] if args.model else [])


def execute(args, models):
    """Runs `compare` (or `resume`) for parsed `args`; prints a summary and the report path."""
    from sepconv import _run_folder, training

    distribution = distribution_from_args(args)
    if args.resume:
        _check_resume_flags(args, models)
        data = None
        if args.data is not None:
            from sepconv.data import load_cifar10

            data = load_cifar10(args.data, progress=not args.quiet)
        folder = args.resume
        call = lambda: training.resume(folder, quiet=args.quiet, data=data, distribution=distribution)  # noqa: E731
    else:
        config = config_from_args(args)
        # Processes of a distributed run agree on the start time, hence on the default folder.
        start = training.start_distribution(distribution, config.batch_size).start_time()
        folder = args.out or _run_folder.default_folder(models, now=start)
        call = lambda: training.compare(  # noqa: E731
            models, config, out=folder, quiet=args.quiet, distribution=distribution
        )
    try:
        result = call()
    except KeyboardInterrupt:
        if os.path.isfile(os.path.join(folder, _run_folder.CONFIG)):
            print(f"continue with: sepconv {args.command} --resume {folder}", file=sys.stderr, flush=True)
        raise
    for name, summary in result.models.items():
        print(
            f"{name}: best val acc {summary['best_val_accuracy']:.4f} (epoch {summary['best_epoch']}), "
            f"final {summary['final_val_accuracy']:.4f}, {summary['median_epoch_time_s']:.2f} s/epoch, "
            f"{summary['params']:,} params"
        )
    print(f"report: {os.path.join(result.folder, 'report.md')} and report.html")
    return 0


def distribution_from_args(args):
    """A `DistributionConfig` from the flags given, the rest from Keras' environment variables."""
    from sepconv.training import DistributionConfig

    return DistributionConfig.from_environment(**_args.options_from_args(args, DistributionConfig))


def config_from_args(args):
    """A `TrainConfig` from the recipe, preset and flags given."""
    from sepconv.training import TrainConfig, make_config

    overrides = _args.options_from_args(args, TrainConfig)
    recipe = overrides.pop("recipe", "tutorial")
    preset = overrides.pop("preset", None)
    return make_config(recipe, preset, **overrides)


def _check_resume_flags(args, models):
    from sepconv.training import TrainConfig

    given = [flag for flag in _args.given_flags(args, TrainConfig) if flag != "--data"]
    given += ["--out"] if args.out is not None else []
    if models:
        given.insert(0, "MODEL")
    if given:
        raise ValueError(
            f"--resume continues a run with its saved models and settings; drop {', '.join(given)}. "
            f"Received: --resume={args.resume}"
        )
