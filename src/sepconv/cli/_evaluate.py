"""`sepconv evaluate`: accuracy of a finished run's models, plain and with test-time augmentation.

Scores each model's final.keras (or best.keras) of a run folder on the test set or on the images
the run validated on, or a .keras file on the test set: plain, with its mirror, and with the
mirrors of views moved diagonally by --tta-shift pixels. Choose settings on a held-out split
(`sepconv train --validation 0.1`); read the test set once.
"""

import os

from sepconv import _options, _provenance, _validation
from sepconv.cli import _args


def add_parser(subparsers):
    from sepconv.training._evaluate import CHECKPOINTS, SPLITS

    parser = subparsers.add_parser(
        "evaluate",
        help="a run's accuracy on the test set or its validation images, with test-time augmentation",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("run", metavar="RUN", help="run folder of `sepconv train` or `sepconv compare`, or a .keras file")
    parser.add_argument(
        "--split",
        default="test",
        type=_args.value_type("--split", _options.parse_str, _options.one_of(SPLITS)),
        metavar="|".join(SPLITS),
        help="the dataset's test images, or the run's validation images (default test)",
    )
    parser.add_argument(
        "--checkpoint",
        default="final",
        type=_args.value_type("--checkpoint", _options.parse_str, _options.one_of(CHECKPOINTS)),
        metavar="|".join(CHECKPOINTS),
        help="final.keras (the last epoch) or best.keras (the best validation epoch) (default final)",
    )
    parser.add_argument(
        "--tta-shift",
        default=1,
        type=_args.value_type("--tta-shift", _options.parse_int, _validation.non_negative_int),
        metavar="N",
        help="also score the mirrors of views moved diagonally by N pixels; 0 for none (default 1)",
    )
    parser.add_argument("--data", metavar="PATH", help="CIFAR-10 copy (default: the run's, else $SEPCONV_DATA)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--output", metavar="FILE", help="also save the JSON result to FILE")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from rich.table import Table

    from sepconv.training import evaluate_run
    from sepconv.training._evaluate import view_names

    if os.path.isdir(args.run) or not args.run.endswith(".keras"):
        result = evaluate_run(args.run, split=args.split, checkpoint=args.checkpoint, tta_shift=args.tta_shift,
                              data=args.data, quiet=args.json)  # fmt: skip
        title = f"{result['folder']}: {result['checkpoint']} on {result['images']:,} images"
    else:
        result = _evaluate_file(args)
        title = f"{result['model_file']} on {result['images']:,} images"
    _args.emit_json(result, output=args.output, stdout=args.json)
    if args.json:
        return 0
    views = view_names(args.tta_shift)
    table = Table(title=title)
    table.add_column("model")
    for view in views:
        table.add_column(view, justify="right")
    for name, scores in result["models"].items():
        table.add_row(name, *(f"{scores[view]:.4f}" for view in views))
    console = _args.console()
    console.print(table)
    console.print(f"Images: {result['split']}; {result['source']}.", highlight=False)
    return 0


def _evaluate_file(args):
    """A .keras file on the test set: a file has no run record, so no validation images and no checkpoints."""
    from sepconv.data import load_cifar10
    from sepconv.training import evaluate_model
    from sepconv.training._evaluate import BATCH_SIZE

    if args.split != "test" or args.checkpoint != "final":
        raise ValueError(
            f"a .keras file is scored on the test set; --split validation and --checkpoint best need a run folder. "
            f"Received: RUN={args.run}"
        )
    model = _args.load_model(args.run, argument="RUN")
    data = load_cifar10(args.data, progress=not args.json)
    return {
        "model_file": args.run,
        "split": "the dataset's test set",
        "images": len(data.y_test),
        "source": data.source,
        "tta_shift": args.tta_shift,
        "batch_size": BATCH_SIZE,
        "models": {model.name: evaluate_model(model, data.x_test, data.y_test, tta_shift=args.tta_shift)},
        "environment": _provenance.environment(),
    }
