"""`sepconv train`: train one model on CIFAR-10 into a run folder with a report.

Settings come from a recipe (`--recipe tutorial|strong`), then a preset (`--preset
quick`), then the flags given. `sepconv compare` shares every flag defined here.
"""

import argparse
import os
import sys

from sepconv.cli._count import parse_positive

# Flags that set a TrainConfig field: (flag, field, metavar, help).
_CONFIG_FLAGS = (
    ("--epochs", "epochs", "N", "passes over the training set"),
    ("--batch-size", "batch_size", "N", "images per step"),
    ("--optimizer", "optimizer", "NAME", "adam, adamw or sgd (Nesterov momentum)"),
    ("--lr", "lr", "X", "learning rate (peak rate with --schedule cosine)"),
    ("--schedule", "schedule", "NAME", "constant, or cosine (linear warmup, then cosine decay to 0)"),
    ("--warmup-epochs", "warmup_epochs", "X", "warmup length of the cosine schedule, in epochs"),
    ("--momentum", "momentum", "X", "momentum of sgd"),
    ("--weight-decay", "weight_decay", "X", "decoupled weight decay"),
    ("--label-smoothing", "label_smoothing", "X", "label smoothing in [0, 1)"),
    ("--train-size", "train_size", "N", "stratified subset of the training images"),
    ("--validation", "validation", "test|FRACTION", "the test set, or a held-out fraction of the training set"),
    ("--val-size", "val_size", "N", "at most N validation images (stratified subset)"),
    ("--seed", "seed", "N", "fixes subsets, data order, augmentation and initial weights"),
    ("--data", "data", "PATH", "CIFAR-10 copy (default: $SEPCONV_DATA, else keras.datasets)"),
)


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
    """The flags `train` and `compare` share."""
    from sepconv.training import PRESETS, RECIPES

    parser.add_argument("--recipe", metavar="NAME", help=f"{' or '.join(RECIPES)} (default tutorial)")
    parser.add_argument("--preset", metavar="NAME", help=f"{', '.join(PRESETS)}: a few minutes on a laptop CPU")
    for flag, _, metavar, text in _CONFIG_FLAGS:
        parser.add_argument(flag, metavar=metavar, help=text)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, help="random crop and flip")
    parser.add_argument("--out", metavar="DIR", help="run folder (default runs/<timestamp>-<models>)")
    parser.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR with its saved settings")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")


def run(args):
    if args.model is None and not args.resume:
        raise ValueError("MODEL is required unless --resume DIR is given. Received: MODEL=None")
    return execute(args, [args.model] if args.model else [])


def execute(args, models):
    """Runs `compare` (or `resume`) for parsed `args`; prints a summary and the report path."""
    from sepconv import training

    if args.resume:
        _check_resume_flags(args, models)
        data = None
        if args.data is not None:
            from sepconv.data import load_cifar10

            data = load_cifar10(args.data, progress=not args.quiet)
        folder = args.resume
        call = lambda: training.resume(folder, quiet=args.quiet, data=data)  # noqa: E731
    else:
        config = config_from_args(args)
        folder = args.out or training_folder(models)
        call = lambda: training.compare(models, config, out=folder, quiet=args.quiet)  # noqa: E731
    try:
        result = call()
    except KeyboardInterrupt:
        if os.path.isfile(os.path.join(folder, "config.json")):
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


def training_folder(models):
    from sepconv.training._run import default_folder

    return default_folder(models)


def config_from_args(args):
    """A `TrainConfig` from the recipe, preset and flags given; flag values are checked here."""
    from sepconv.training import OPTIMIZERS, PRESETS, RECIPES, SCHEDULES, make_config

    recipe = _name(args.recipe, "--recipe", RECIPES) if args.recipe is not None else "tutorial"
    preset = _name(args.preset, "--preset", PRESETS) if args.preset is not None else None
    parsers = {
        "epochs": lambda text, flag: parse_positive(text, flag),
        "batch_size": lambda text, flag: parse_positive(text, flag),
        "train_size": lambda text, flag: parse_positive(text, flag),
        "val_size": lambda text, flag: parse_positive(text, flag),
        "seed": _non_negative,
        "optimizer": lambda text, flag: _name(text, flag, OPTIMIZERS),
        "schedule": lambda text, flag: _name(text, flag, SCHEDULES),
        "lr": lambda text, flag: _number(text, flag, low=0.0, low_open=True),
        "warmup_epochs": lambda text, flag: _number(text, flag, low=0.0),
        "momentum": lambda text, flag: _number(text, flag, low=0.0, high=1.0),
        "weight_decay": lambda text, flag: _number(text, flag, low=0.0),
        "label_smoothing": lambda text, flag: _number(text, flag, low=0.0, high=1.0),
        "validation": _validation,
        "data": lambda text, flag: text,
    }
    overrides = {}
    for flag, field, _, _ in _CONFIG_FLAGS:
        text = getattr(args, field)
        if text is not None:
            overrides[field] = parsers[field](text, flag)
    if args.augment is not None:
        overrides["augment"] = args.augment
    return make_config(recipe, preset, **overrides)


def _check_resume_flags(args, models):
    given = [flag for flag, field, _, _ in _CONFIG_FLAGS if field != "data" and getattr(args, field) is not None]
    given += [flag for flag in ("--recipe", "--preset", "--out") if getattr(args, flag[2:]) is not None]
    given += ["--augment"] if args.augment is not None else []
    if models:
        given.insert(0, "MODEL")
    if given:
        raise ValueError(
            f"--resume continues a run with its saved models and settings; drop {', '.join(given)}. "
            f"Received: --resume={args.resume}"
        )


def _name(text, flag, allowed):
    if text not in allowed:
        import difflib

        close = difflib.get_close_matches(text, list(allowed), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ValueError(f"{flag} must be one of {', '.join(allowed)}.{hint} Received: {flag}={text}")
    return text


def _non_negative(text, flag):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{flag} must be a non-negative integer. Received: {flag}={text}")
    return value


def _number(text, flag, low, high=None, low_open=False):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    ok = value > low if low_open else value >= low
    ok = ok and (high is None or value < high)
    if not ok:  # NaN fails every comparison
        interval = f"{'(' if low_open else '['}{low:g}, {'inf' if high is None else f'{high:g}'})"
        raise ValueError(f"{flag} must be a number in {interval}. Received: {flag}={text}")
    return value


def _validation(text, flag):
    if text == "test":
        return "test"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise ValueError(f"{flag} must be 'test' or a fraction in (0, 1). Received: {flag}={text}")
    return value
