"""`sepconv compare`: train several models on identical data, order, optimizer and schedule.

Writes one run folder: config.json, history.csv, results.json, per-model checkpoints,
report.md, report.html and PNG figures. Takes every flag of `sepconv train`.
"""

from sepconv.cli._train import add_run_flags, execute


def add_parser(subparsers):
    from sepconv.training import DEFAULT_MODELS

    parser = subparsers.add_parser(
        "compare",
        help="train several models on identical data and compare them in one report",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"names from sepconv.models.list_models() (default: {' '.join(DEFAULT_MODELS)})",
    )
    add_run_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args):
    from sepconv.training import DEFAULT_MODELS

    models = list(args.models)
    if not models and not args.resume:
        models = list(DEFAULT_MODELS)
    return execute(args, models)
