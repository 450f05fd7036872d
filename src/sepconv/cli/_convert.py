"""`sepconv convert`: a trained model's convolutions as depthwise separable ones.

Loads IN (a `.keras` file, in Keras' safe mode unless `--unsafe`), replaces
each Conv1D/Conv2D with a kernel larger than 1x1 by a depthwise separable
layer initialized from its weights (Network Decoupling, Guo et al., BMVC 2018,
arXiv:1808.05517; see `sepconv.convert`), prints the per-layer report,
optionally fine-tunes on CIFAR-10, and saves OUT atomically.
"""

import json
import os
import zipfile

import numpy as np
from rich.console import Console

from sepconv._atomic import save_model
from sepconv.cli._count import parse_positive


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "convert",
        help="turn a trained model's convolutions into depthwise separable ones",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("input", metavar="IN", help="trained model, a .keras file")
    parser.add_argument("output", metavar="OUT", help="where to save the converted model (.keras)")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument("--rank", metavar="R", help="depth multiplier of each converted layer (default: full, exact)")
    rule.add_argument("--energy", metavar="E", help="per layer, keep this fraction in (0, 1] of the kernel energy")
    rule.add_argument("--budget", metavar="F", help="keep at most this fraction in (0, 1] of the params or MACs")
    parser.add_argument("--budget-metric", choices=("params", "macs"), default="params", help="what --budget limits")
    parser.add_argument(
        "--include", action="append", metavar="PATTERN", help="convert only matching layers (glob: name, path, class)"
    )
    parser.add_argument("--exclude", action="append", metavar="PATTERN", help="leave matching layers as they are")
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument(
        "--calibration-data",
        metavar="PATH",
        help="inputs to measure output errors on: a .npy array or a CIFAR-10 copy (default: 8 N(0, 1) samples)",
    )
    calibration.add_argument("--no-calibration", action="store_true", help="do not run the model to measure errors")
    parser.add_argument("--calibration-size", default="64", metavar="N", help="samples to use (default 64)")
    parser.add_argument("--finetune-epochs", default="0", metavar="N", help="fine-tune on CIFAR-10 for N epochs")
    parser.add_argument("--data", metavar="PATH", help="CIFAR-10 copy to fine-tune on (see sepconv.data.load_cifar10)")
    parser.add_argument("--train-size", metavar="N", help="fine-tune on N training images (default: all)")
    parser.add_argument("--batch-size", default="128", metavar="N", help="fine-tuning batch size (default 128)")
    parser.add_argument("--learning-rate", default="1e-4", metavar="LR", help="fine-tuning Adam step (default 1e-4)")
    parser.add_argument("--from-logits", action="store_true", help="the model outputs logits, not probabilities")
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="load IN with safe_mode=False: runs code stored in the file, only for files you trust",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    parser.set_defaults(func=run)
    return parser


def _number(text, flag, kind=float):
    try:
        return kind(text)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{flag} must be {what}. Received: {flag}={text}") from None


def load_model(path, unsafe=False):
    """A model from a `.keras` file; safe mode unless `unsafe`."""
    import keras

    import sepconv.layers  # noqa: F401  (registers sepconv's layers for deserialization)

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such model file. Received: IN={path}")
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = " (pass --unsafe to load it, only if you trust the file)" if "safe_mode" in str(error) else ""
        raise ValueError(f"Not a loadable Keras model file (.keras): {reason}{hint}. Received: IN={path}") from error


def _image_format(model):
    shape = tuple(model.inputs[0].shape[1:])
    if shape == (32, 32, 3):
        return "channels_last"
    if shape == (3, 32, 32):
        return "channels_first"
    raise ValueError(f"CIFAR-10 data needs a model taking 32x32x3 images. Received: input_shape={shape}")


def calibration_data(path, size, model):
    """`size` model inputs: the first of a `.npy` array, or CIFAR-10 test images drawn with seed 0.

    CIFAR-10 images are drawn at random because image-folder copies list the
    test set class by class: the first images would all be airplanes.
    """
    if path.endswith(".npy"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such calibration file. Received: --calibration-data={path}")
        return np.load(path, allow_pickle=False)[:size]
    from sepconv.data import Batches, load_cifar10

    data = load_cifar10(path)
    data_format = _image_format(model)
    rows = np.sort(np.random.default_rng(0).permutation(len(data.y_test))[:size])
    images = Batches(data.x_test[rows], data.y_test[rows], batch_size=size, shuffle=False, data_format=data_format)
    return images[0][0]


def _accuracy(model, data, from_logits):
    import keras

    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    return float(model.evaluate(data, verbose=0, return_dict=True)["accuracy"])


def finetune_on_cifar10(model, original, args, *, epochs, train_size, batch_size, learning_rate):
    """Fine-tunes `model` in place; returns validation accuracies and the history."""
    from sepconv.convert import finetune
    from sepconv.data import Batches, load_cifar10, make_splits

    data_format = _image_format(model)
    splits = make_splits(load_cifar10(args.data), train_size=train_size, validation="test", seed=0)
    train = Batches(
        splits.x_train, splits.y_train, batch_size=batch_size, augment=True, seed=0, data_format=data_format
    )
    val = Batches(splits.x_val, splits.y_val, batch_size=256, shuffle=False, data_format=data_format)
    accuracy = {
        "original": _accuracy(original, val, args.from_logits),
        "converted": _accuracy(model, val, args.from_logits),
    }
    history = finetune(
        model,
        train,
        val,
        epochs=epochs,
        learning_rate=learning_rate,
        from_logits=args.from_logits,
        verbose=0 if args.json else "auto",
    )
    accuracy["finetuned"] = float(history["val_accuracy"][-1])
    return {
        "epochs": epochs,
        "train_images": len(splits.y_train),
        "validation": splits.validation,
        "learning_rate": learning_rate,
        "accuracy": accuracy,
        "history": {key: [float(v) for v in values] for key, values in history.items()},
    }


def _fraction(text, flag):
    value = _number(text, flag)
    if not 0 < value <= 1:
        raise ValueError(f"{flag} must be in (0, 1]. Received: {flag}={text}")
    return value


def _finetune_options(args):
    """Keyword arguments of `finetune_on_cifar10`, or None without fine-tuning."""
    epochs = _number(args.finetune_epochs, "--finetune-epochs", int)
    if epochs < 0:
        raise ValueError(f"--finetune-epochs must be 0 or more. Received: --finetune-epochs={args.finetune_epochs}")
    if epochs == 0:
        return None
    if args.data is None:
        raise ValueError(f"--finetune-epochs needs --data PATH (a CIFAR-10 copy). Received: --finetune-epochs={epochs}")
    train_size = None if args.train_size is None else parse_positive(args.train_size, "--train-size")
    learning_rate = _number(args.learning_rate, "--learning-rate")
    if not learning_rate > 0:
        raise ValueError(f"--learning-rate must be positive. Received: --learning-rate={args.learning_rate}")
    batch_size = parse_positive(args.batch_size, "--batch-size")
    return dict(epochs=epochs, train_size=train_size, batch_size=batch_size, learning_rate=learning_rate)


def _environment():
    import keras

    import sepconv

    return {"backend": keras.backend.backend(), "keras": keras.__version__, "sepconv": sepconv.__version__}


def run(args):
    from sepconv.convert import convert, render_report

    if not args.output.endswith(".keras"):
        raise ValueError(f"OUT must be a .keras file. Received: OUT={args.output}")
    rank = None if args.rank is None else parse_positive(args.rank, "--rank")
    energy = None if args.energy is None else _fraction(args.energy, "--energy")
    budget = None if args.budget is None else _fraction(args.budget, "--budget")
    size = parse_positive(args.calibration_size, "--calibration-size")
    options = _finetune_options(args)

    model = load_model(args.input, unsafe=args.unsafe)
    if args.no_calibration:
        calibration = None
    elif args.calibration_data is None:
        calibration = "random"
    else:
        calibration = calibration_data(args.calibration_data, size, model)
    new_model, report = convert(
        model,
        rank=rank,
        energy=energy,
        budget=budget,
        budget_metric=args.budget_metric,
        include=args.include,
        exclude=args.exclude,
        calibration=calibration,
    )
    result = {"input": args.input, "output": args.output, "environment": _environment(), "report": report.to_dict()}
    if options:
        result["finetune"] = finetune_on_cifar10(new_model, model, args, **options)
    save_model(new_model, args.output)

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(render_report(report))
    if options:
        tuned = result["finetune"]
        accuracy = tuned["accuracy"]
        console.print(
            f"Fine-tuned {tuned['epochs']} epoch(s) on {tuned['train_images']:,} images. Validation accuracy on "
            f"{tuned['validation']}: original {accuracy['original']:.4f}, converted "
            f"{accuracy['converted']:.4f}, fine-tuned {accuracy['finetuned']:.4f}",
            highlight=False,
        )
    console.print(f"Saved {args.output}", highlight=False)
    return 0
