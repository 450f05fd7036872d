"""`sepconv convert`: a trained model's convolutions as depthwise separable ones.

Loads IN (a `.keras` file, in Keras' safe mode unless `--unsafe`), replaces
each Conv1D/Conv2D with a kernel larger than 1x1 by a depthwise separable
layer initialized from its weights (Network Decoupling, Guo et al., BMVC 2018,
arXiv:1808.05517; see `sepconv.convert`), optionally refits each layer to the
original network's outputs on calibration data (`--reconstruct`), prints the
per-layer report, optionally fine-tunes on CIFAR-10 by distillation from IN,
and saves OUT atomically.
"""

import os
import time

import numpy as np

from sepconv import _options, _provenance, _validation
from sepconv._atomic import save_model
from sepconv.cli import _args

_fraction = _options.in_range(low=0.0, high=1.0, low_open=True)
MEASURE_SAMPLES, RECONSTRUCT_SAMPLES = 64, 1024  # default --calibration-size
RELU_ROUNDS = 2  # default --relu-rounds: convert()'s (sepconv.convert is imported lazily)
SCHEDULES = ("constant", "cosine")  # finetune()'s
_positive_number = _options.in_range(low=0.0, low_open=True)


def _int_flag(flag, check=_validation.positive_int):
    return _args.value_type(flag, _options.parse_int, check)


def _float_flag(flag, check):
    return _args.value_type(flag, _options.parse_float, check)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "convert",
        help="turn a trained model's convolutions into depthwise separable ones",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("input", metavar="IN", help="trained model, a .keras file")
    parser.add_argument("output", metavar="OUT", help="where to save the converted model (.keras)")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument(
        "--rank", type=_int_flag("--rank"), metavar="R", help="depth multiplier of each layer (default: exact)"
    )
    rule.add_argument(
        "--energy",
        type=_float_flag("--energy", _fraction),
        metavar="E",
        help="per layer, keep this fraction in (0, 1] of the kernel energy",
    )
    rule.add_argument(
        "--budget",
        type=_float_flag("--budget", _fraction),
        metavar="F",
        help="keep at most this fraction in (0, 1] of the params or MACs",
    )
    parser.add_argument(
        "--budget-metric", choices=("params", "macs"), default="params", help="what --budget limits (default params)"
    )
    parser.add_argument(
        "--include", action="append", metavar="PATTERN", help="convert only matching layers (glob: name, path, class)"
    )
    parser.add_argument("--exclude", action="append", metavar="PATTERN", help="leave matching layers as they are")
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument(
        "--calibration-data",
        metavar="PATH",
        help="inputs to measure output errors on and reconstruct from: a .npy array, or a CIFAR-10 copy (its "
        "training images, labels unused) (default: 8 N(0, 1) samples)",
    )
    calibration.add_argument("--no-calibration", action="store_true", help="do not run the model to measure errors")
    parser.add_argument(
        "--calibration-size",
        type=_int_flag("--calibration-size"),
        metavar="N",
        help=f"samples (default {MEASURE_SAMPLES}; {RECONSTRUCT_SAMPLES} with --reconstruct)",
    )
    parser.add_argument(
        "--calibration-batch-size",
        default=32,
        type=_int_flag("--calibration-batch-size"),
        metavar="N",
        help="calibration samples per forward pass (default 32)",
    )
    parser.add_argument(
        "--reconstruct",
        action="store_true",
        help="refit each converted layer to the original's outputs on the calibration data (no labels); "
        "with --budget, choose ranks by that output error",
    )
    parser.add_argument(
        "--iterations",
        default=4,
        type=_int_flag("--iterations", _validation.non_negative_int),
        metavar="N",
        help="rounds of alternating least squares per layer with --reconstruct (default 4; 0: pointwise only)",
    )
    parser.add_argument(
        "--relu-rounds",
        default=RELU_ROUNDS,
        type=_int_flag("--relu-rounds", _validation.non_negative_int),
        metavar="N",
        help=f"with --reconstruct, refit layers whose output goes through a ReLU to what passes it, N times "
        f"(N + 1 more calibration passes; default {RELU_ROUNDS}; 0: pre-activation fit only)",
    )
    parser.add_argument(
        "--finetune-epochs",
        default=0,
        type=_int_flag("--finetune-epochs", _validation.non_negative_int),
        metavar="N",
        help="fine-tune on CIFAR-10 for N epochs",
    )
    parser.add_argument("--data", metavar="PATH", help="CIFAR-10 copy to fine-tune on (see sepconv.data.load_cifar10)")
    parser.add_argument(
        "--train-size", type=_int_flag("--train-size"), metavar="N", help="fine-tune on N images (default: all)"
    )
    parser.add_argument(
        "--batch-size", default=128, type=_int_flag("--batch-size"), metavar="N", help="fine-tuning batch (default 128)"
    )
    parser.add_argument(
        "--learning-rate",
        default=1e-4,
        type=_float_flag("--learning-rate", _positive_number),
        metavar="LR",
        help="fine-tuning Adam step (default 1e-4)",
    )
    parser.add_argument(
        "--schedule",
        default="constant",
        choices=SCHEDULES,
        help="fine-tuning step: constant, or decayed to 0 on a cosine over all epochs (default constant)",
    )
    parser.add_argument(
        "--warmup",
        default=0.0,
        type=_float_flag("--warmup", _options.in_range(low=0.0, high=1.0, high_open=True)),
        metavar="F",
        help="share of the fine-tuning updates over which the step rises from a tenth of --learning-rate to it, "
        "in [0, 1) (default 0)",
    )
    parser.add_argument(
        "--clip-norm",
        default=None,
        type=_float_flag("--clip-norm", _positive_number),
        metavar="C",
        help="scale each fine-tuning update's gradients together to a global norm of at most C (default: no "
        "clipping)",
    )
    parser.add_argument(
        "--temperature",
        default=4.0,
        type=_float_flag("--temperature", _positive_number),
        metavar="T",
        help="fine-tuning distills IN's outputs softened by T (default 4)",
    )
    parser.add_argument(
        "--label-weight",
        default=0.0,
        type=_float_flag("--label-weight", _options.in_range(low=0.0, high=1.0)),
        metavar="A",
        help="share of the labels' cross-entropy in the fine-tuning loss, in [0, 1] (default 0: IN's outputs "
        "only; 1: labels only)",
    )
    parser.add_argument(
        "--feature-weight",
        default=0.0,
        type=_float_flag("--feature-weight", _options.in_range(low=0.0)),
        metavar="B",
        help="fine-tuning also matches each converted layer's output to IN's, B times their mean relative squared "
        "error (default 0: IN's final outputs only)",
    )
    parser.add_argument(
        "--mixup",
        default=0.0,
        type=_float_flag("--mixup", _options.in_range(low=0.0)),
        metavar="ALPHA",
        help="fine-tuning mixes each batch with itself shifted by one, the weight drawn from Beta(ALPHA, ALPHA), "
        "and distills IN's outputs on the mixed images (default 0: off)",
    )
    parser.add_argument(
        "--reparameterize",
        action="store_true",
        help="fine-tune the separable layers with a BatchNorm after each step, folded into their kernels "
        "afterwards: OUT keeps its shape and parameter count",
    )
    parser.add_argument(
        "--seed",
        default=0,
        type=_int_flag("--seed", _validation.non_negative_int),
        metavar="N",
        help="draws the fine-tuning order, augmentation and --train-size subset (default 0)",
    )
    parser.add_argument(
        "--train-batch-norm",
        action="store_true",
        help="fine-tune BatchNorm layers in training mode (default: frozen, in inference mode)",
    )
    parser.add_argument("--from-logits", action="store_true", help="the model outputs logits, not probabilities")
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="load IN with safe_mode=False: runs code stored in the file, only for files you trust",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    parser.set_defaults(func=run)
    return parser


def _calibration(args, model):
    """What `convert` measures output errors on: None, "random", or an array of inputs."""
    if args.no_calibration:
        return None
    if args.calibration_data is None:
        return "random"
    size = args.calibration_size or (RECONSTRUCT_SAMPLES if args.reconstruct else MEASURE_SAMPLES)
    if args.calibration_data.endswith(".npy"):
        if not os.path.isfile(args.calibration_data):
            path = args.calibration_data
            raise FileNotFoundError(f"No such calibration file. Received: --calibration-data={path}")
        return np.load(args.calibration_data, mmap_mode="r", allow_pickle=False)[:size]
    from sepconv.convert import cifar10_calibration

    return cifar10_calibration(args.calibration_data, size, model)


def run(args):
    from sepconv.convert import convert, finetune_on_cifar10, render_report

    if not args.output.endswith(".keras"):
        raise ValueError(f"OUT must be a .keras file. Received: OUT={args.output}")
    if args.finetune_epochs and args.data is None:
        raise ValueError(
            f"--finetune-epochs needs --data PATH (a CIFAR-10 copy). Received: --finetune-epochs={args.finetune_epochs}"
        )
    if args.reconstruct and args.calibration_data is None:
        raise ValueError(
            "--reconstruct needs --calibration-data PATH (a .npy array of model inputs or a CIFAR-10 copy). "
            "Received: --calibration-data=None"
        )
    model = _args.load_model(args.input, argument="IN", unsafe=args.unsafe)
    start = time.perf_counter()
    calibration = _calibration(args, model)
    new_model, report = convert(
        model,
        rank=args.rank,
        energy=args.energy,
        budget=args.budget,
        budget_metric=args.budget_metric,
        include=args.include,
        exclude=args.exclude,
        calibration=calibration,
        calibration_batch_size=args.calibration_batch_size,
        reconstruct=args.reconstruct,
        iterations=args.iterations,
        relu_rounds=args.relu_rounds,
        verbose=not args.json,
    )
    seconds = time.perf_counter() - start
    result = {
        "input": args.input,
        "output": args.output,
        "environment": _provenance.environment(),
        "report": report.to_dict(),
        "seconds": seconds,
    }
    if args.finetune_epochs:
        result["finetune"] = finetune_on_cifar10(
            new_model,
            model,
            args.data,
            epochs=args.finetune_epochs,
            train_size=args.train_size,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            schedule=args.schedule,
            warmup=args.warmup,
            from_logits=args.from_logits,
            verbose=0 if args.json else "auto",
            temperature=args.temperature,
            label_weight=args.label_weight,
            feature_weight=args.feature_weight,
            mixup=args.mixup,
            reparameterize=args.reparameterize,
            seed=args.seed,
            clip_norm=args.clip_norm,
            freeze_batch_norm=not args.train_batch_norm,
        )
    save_model(new_model, args.output)

    if args.json:
        _args.emit_json(result)
        return 0
    console = _args.console()
    console.print(render_report(report))
    if args.finetune_epochs:
        tuned = result["finetune"]
        accuracy = tuned["accuracy"]
        how = f"distilled from IN, temperature {tuned['temperature']:g}"
        how = "labels only" if tuned["label_weight"] == 1 else how
        how += f", layer outputs weighted {tuned['feature_weight']:g}" if tuned["feature_weight"] else ""
        how += f", mixup {tuned['mixup']:g}" if tuned["mixup"] else ""
        how += ", reparameterized with BatchNorm" if tuned["reparameterize"] else ""
        how += f", gradients clipped to norm {tuned['clip_norm']:g}" if tuned["clip_norm"] else ""
        console.print(
            f"Fine-tuned {tuned['epochs']} epoch(s) on {tuned['train_images']:,} images ({how}). "
            f"Validation accuracy on {tuned['validation']}: original {accuracy['original']:.4f}, converted "
            f"{accuracy['converted']:.4f}, fine-tuned {accuracy['finetuned']:.4f}",
            highlight=False,
        )
    console.print(f"Saved {args.output}", highlight=False)
    return 0
