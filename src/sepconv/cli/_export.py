"""`sepconv export`: a `.keras` model as an ONNX or LiteRT file, checked in its runtime.

Loads MODEL (Keras' safe mode unless `--unsafe`), folds BatchNormalization into the
kernels before it, writes OUT (`.onnx` for ONNX Runtime, `.tflite` for LiteRT; float32,
or int8 with `--quantize int8` and calibration images), then runs OUT in its runtime on a
batch and compares with Keras: max abs difference (float32, must be <= 1e-5) or top-1
agreement (int8, must be >= 99%). With `--data`, the check runs on CIFAR-10 test images
and reports both test accuracies; int8 calibrates on CIFAR-10 training images. With
`--qat-epochs N`, int8 starts with quantization-aware fine-tuning on the CIFAR-10 training
images, distilled from MODEL (`sepconv.export.finetune_for_int8`); the check still compares
with MODEL itself. `--calibration-method percentile`, and `--int16-activations N` (`.onnx`)
or `--float-ops N` (`.tflite`), raise int8's agreement with float (see
`sepconv.export._writers`). Exit code 1 when the check fails (the file is kept, to
inspect). Needs `pip install 'sepconv[export]'`.
"""

import dataclasses
import os
import sys
import time

import numpy as np

from sepconv import _options, _provenance, _validation
from sepconv._options import option
from sepconv.cli import _args

QUANTIZATIONS = ("none", "int8")
# Kept in step with sepconv.export._writers (not imported: the CLI loads without the export extra).
CALIBRATION_METHODS = ("minmax", "percentile")
PERCENTILE = 99.999
CHECK_SAMPLES = 32


@dataclasses.dataclass
class ExportOptions:
    """The settings of `sepconv export` (flags generated from these fields)."""

    quantize: str = option("none", "none (float32) or int8 (static, calibrated)", check=_options.one_of(QUANTIZATIONS),
                           metavar="MODE")  # fmt: skip
    fold: bool = option(True, "fold BatchNormalization into the kernel and bias before it", check=_validation.boolean)
    data: str = option(None, "CIFAR-10 copy: check on test images, report accuracies, calibrate int8 on "
                       "training images", check=_validation.optional(_validation.string), metavar="PATH")  # fmt: skip
    calibration_data: str = option(None, "int8 calibration images as a .npy array (instead of --data)",
                                   check=_validation.optional(_validation.string), metavar="FILE")  # fmt: skip
    calibration_size: int = option(256, "int8 calibration images", check=_validation.positive_int,
                                   parse=_options.parse_int, metavar="N")  # fmt: skip
    calibration_method: str = option("minmax", "int8 activation ranges: minmax, or percentile of their absolute "
                                     "values", check=_options.one_of(CALIBRATION_METHODS),
                                     metavar="NAME")  # fmt: skip
    percentile: float = option(PERCENTILE, "the percentile of --calibration-method percentile",
                               check=_options.in_range(low=50, high=100, low_open=True), parse=_options.parse_float,
                               metavar="X")  # fmt: skip
    int16_activations: int = option(0, "int8 .onnx: keep the first N quantized activations (the input first) in "
                                    "16 bits", check=_validation.non_negative_int, parse=_options.parse_int,
                                    metavar="N")  # fmt: skip
    float_ops: int = option(0, "int8 .tflite: keep the first N convolution and dense operators (the stem first) "
                            "and all before them in float32",
                            check=_validation.non_negative_int, parse=_options.parse_int, metavar="N")
    qat_epochs: int = option(0, "int8: epochs of quantization-aware fine-tuning on the training images of --data, "
                             "distilled from MODEL (0: none)", check=_validation.non_negative_int,
                             parse=_options.parse_int, metavar="N")  # fmt: skip
    qat_size: int = option(None, "training images for --qat-epochs (default: all)",
                           check=_validation.optional(_validation.positive_int), parse=_options.parse_int,
                           metavar="N")  # fmt: skip
    qat_learning_rate: float = option(1e-3, "SGD learning rate of --qat-epochs, decayed to 0 on a cosine",
                                      check=_options.in_range(low=0, low_open=True), parse=_options.parse_float,
                                      metavar="X")  # fmt: skip
    eval_size: int = option(None, "CIFAR-10 test images to check on with --data (default: all)",
                            check=_validation.optional(_validation.positive_int), parse=_options.parse_int,
                            metavar="N")  # fmt: skip
    threads: int = option(None, "runtime threads for the check (default: the runtime's)",
                          check=_validation.optional(_validation.positive_int), parse=_options.parse_int,
                          metavar="N")  # fmt: skip

    def __post_init__(self):
        _options.validate(self)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help="write a model for ONNX Runtime or LiteRT, float32 or int8, checked", description=__doc__
    )
    parser.add_argument("model", metavar="MODEL", help="the model, a .keras file")
    parser.add_argument("output", metavar="OUT", help="the file to write: .onnx (ONNX Runtime) or .tflite (LiteRT)")
    _args.add_options(parser, ExportOptions)
    parser.add_argument(
        "--unsafe", action="store_true", help="load MODEL with safe_mode=False: only for files you trust"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--output-json", metavar="FILE", help="also save the JSON result to FILE")
    parser.set_defaults(func=run)
    return parser


def _calibration(options, model):
    if options.quantize != "int8":
        if options.calibration_data:
            raise ValueError(
                f"--calibration-data is used only with --quantize int8. Received: --quantize={options.quantize}"
            )
        return None
    path = options.calibration_data
    if path:
        if not path.endswith(".npy"):
            raise ValueError(f"--calibration-data must be a .npy file. Received: --calibration-data={path}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such calibration file. Received: --calibration-data={path}")
        return np.load(path, allow_pickle=False)[: options.calibration_size]
    if options.data:
        from sepconv.export import cifar10_images

        return cifar10_images(options.data, model, options.calibration_size, split="train")[0]
    raise ValueError("--quantize int8 needs calibration images: --data PATH (CIFAR-10) or --calibration-data FILE.npy. "
                     "Received: --quantize=int8")  # fmt: skip


def _flag_spelling(name, value=None):
    flag = "--" + name.replace("_", "-")
    return flag if value is None else f"{flag}={value}"


def _finetune(options, model, calibration, quiet):
    """`(model to export, its int8 simulation, JSON record)`: MODEL, or its quantization-aware fine-tuned twin."""
    if not options.qat_epochs:
        return model, None, None
    if options.quantize != "int8":
        raise ValueError(f"--qat-epochs is used only with --quantize int8. Received: --quantize={options.quantize}")
    if not options.data:
        raise ValueError(
            f"--qat-epochs needs training images: --data PATH (CIFAR-10). Received: --qat-epochs={options.qat_epochs}"
        )
    from sepconv.export import cifar10_images, finetune_for_int8

    images = cifar10_images(options.data, model, options.qat_size, split="train", seed=1)[0]
    start = time.perf_counter()
    # Keras' bar on a terminal, a line per epoch in a log, nothing when stdout carries JSON.
    verbose = 0 if quiet else 1 if sys.stdout.isatty() else 2
    tuned = finetune_for_int8(model, images, calibration, epochs=options.qat_epochs,
                              learning_rate=options.qat_learning_rate, verbose=verbose,
                              calibration_method=options.calibration_method, percentile=options.percentile,
                              int16_activations=options.int16_activations, float_ops=options.float_ops)  # fmt: skip
    record = {
        "epochs": options.qat_epochs,
        "images": len(images),
        "learning_rate": options.qat_learning_rate,
        "seconds": time.perf_counter() - start,
        "loss": [float(v) for v in tuned.logits.history.history["loss"]],
        "batch_norm": tuned.folded_batch_norm,
    }
    return tuned.float_model, tuned.simulated, record


def _check_inputs(options, model, calibration):
    """`(x, y, description)`: what the exported file is compared with Keras on."""
    if options.data:
        from sepconv.export import cifar10_images

        x, y = cifar10_images(options.data, model, options.eval_size, split="test")
        return x, y, f"{len(y)} CIFAR-10 test images"
    if calibration is not None:
        return calibration, None, f"the {len(calibration)} calibration images"
    shape = tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(0).standard_normal((CHECK_SAMPLES, *shape)).astype(np.float32)
    return x, None, f"{CHECK_SAMPLES} random N(0, 1) inputs"


def run(args):
    from sepconv.export import check_export, export_model, float32_model, format_of
    from sepconv.export._export import int8_options

    options = ExportOptions(**_args.options_from_args(args, ExportOptions))
    fmt = format_of(args.output, "OUT")
    # refused before any work: the same check `export_model` makes, in the flags' words
    int8_options(fmt, options.quantize, options.calibration_method, options.percentile,
                 options.int16_activations, options.float_ops, spell=_flag_spelling)  # fmt: skip
    model = float32_model(_args.load_model(args.model, unsafe=args.unsafe))  # once: the calls below reuse it
    calibration = _calibration(options, model)
    exported, simulation, qat = _finetune(options, model, calibration, quiet=args.json)
    export = export_model(exported, args.output, quantize=options.quantize, calibration=calibration, fold=options.fold,
                          calibration_method=options.calibration_method, percentile=options.percentile,
                          int16_activations=options.int16_activations, float_ops=options.float_ops)  # fmt: skip
    x, y, description = _check_inputs(options, model, calibration)
    check = check_export(model, args.output, x, y, quantize=options.quantize, threads=options.threads)
    check["inputs"] = description
    if qat is not None:  # how closely the file follows the simulation it was tuned in
        qat["simulation_agreement"] = check_export(simulation, args.output, x, quantize="int8")["top1_agreement"]
    result = {
        "model": args.model,
        "environment": _provenance.environment(),
        "options": dataclasses.asdict(options),
        "export": export,
        "check": check,
    }
    if qat is not None:
        export["batch_norm"] = qat.pop("batch_norm")  # folded before fine-tuning: what export_model saw had none
        result["qat"] = qat
    _args.emit_json(result, output=args.output_json, stdout=args.json)
    if not args.json:
        console = _args.console()
        for line in summary(result):
            console.print(line, highlight=False)
    return 0 if check["passed"] else 1


def summary(result):
    """Lines for the terminal."""
    export, check = result["export"], result["check"]
    bn = export["batch_norm"]
    ops = ", ".join(f"{name} {count}" for name, count in export["ops"].items())
    lines = [
        f"Wrote {export['path']} ({export['format']}, {export['quantize']}, {export['bytes'] / 1e6:.2f} MB) from "
        f"{export['backend']}; BatchNormalization folded: {bn['folded']}, left: {bn['left']}",
        f"Operators: {ops}",
        f"Check in {check['runtime']} on {check['inputs']}: max abs diff {check['max_abs_diff']:.2e}, top-1 agreement "
        f"{100 * check['top1_agreement']:.2f}% -> {'passed' if check['passed'] else 'FAILED'} ({check['criterion']})",
    ]
    if "int8" in export:
        int8 = export["int8"]
        method = f"percentile {int8['percentile']:g}" if int8["calibration_method"] == "percentile" else "min-max"
        wide = ""
        if int8.get("int16_activations"):
            wide = f"; first {int8['int16_activations']} activations in 16 bits"
        if int8.get("float_ops"):
            wide = f"; first {int8['float_ops']} operators in float32"
        lines.insert(1, f"int8 calibration: {export['calibration_images']} images, {method} ranges{wide}")
    if "qat" in result:
        qat = result["qat"]
        lines.insert(1, f"Quantization-aware fine-tuning: {qat['epochs']} epoch(s) over {qat['images']} images, "
                        f"distilled from MODEL ({qat['seconds']:.0f} s); the file agrees with its int8 simulation "
                        f"on {100 * qat['simulation_agreement']:.2f}%")  # fmt: skip
    if "keras_accuracy" in check:
        lines.append(
            f"Test accuracy: Keras {100 * check['keras_accuracy']:.2f}%, "
            f"exported {100 * check['exported_accuracy']:.2f}%"
        )
    return lines
