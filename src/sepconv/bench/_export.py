"""`sepconv bench export`: latency and throughput where exported models run, Keras next to them.

Each registry model (random weights: timings do not depend on the values) is exported
with `sepconv.export.export_model` to each format, float32 and int8 (calibrated on
N(0, 1) images; a speed figure, not an accuracy one), into a temporary folder. Then,
interleaved call by call so that every ratio shares the machine's load:

- single image: one `(1, 32, 32, 3)` call, the latency a phone or a server answering one
  request sees;
- batch: one `(batch_size, ...)` call, reported as images/s.

The runtimes run on the CPU with `threads` intra-op threads (ONNX Runtime's
`intra_op_num_threads`, LiteRT's `num_threads` with its default XNNPACK delegate); Keras
runs `predict_on_batch` with the backend's own thread pool (its count is in the record).
`--profile` adds ONNX Runtime's own profiler: the share of single-image time per
operator type of each float ONNX model, convolutions split into depthwise, 1x1 and
regular ones by their weight shapes.
"""

import collections
import dataclasses
import json
import os
import tempfile

import keras
import numpy as np

from sepconv import _options, _provenance, _validation, analysis, models
from sepconv._options import one_of, option
from sepconv.bench import _timing

FORMATS = ("onnx", "litert")
# int8-a16: ONNX int8 with the first `int16_activations` activations in 16 bits; int8-f32: LiteRT int8 with the
# first `float_ops` convolution and dense operators in float32 (what each costs).
PRECISIONS = ("float32", "int8", "int8-a16", "int8-f32")
_ONLY_IN = {"int8-a16": "onnx", "int8-f32": "litert"}
_EXTENSIONS = {"onnx": ".onnx", "litert": ".tflite"}
_CALIBRATION = 64


def _model_name(name, argument):
    return models.check_model_name(name, argument)


@dataclasses.dataclass
class ExportBenchConfig:
    """What `run` measures. Ratios are to the first model, per runtime and precision."""

    # dsc_resnet10: the zoo's most accurate trained separable network (README, `--recipe fast`).
    models: tuple = option(("vgg", "vgg_separable", "dsc_resnet10"), "registry model names; ratios are to the first",
                           check=_validation.each(_model_name), nargs="+", metavar="MODEL", flag=False)  # fmt: skip
    formats: tuple = option(FORMATS, "runtimes: onnx (ONNX Runtime), litert (LiteRT)", check=_validation.each(
        one_of(FORMATS)), nargs="+", metavar="FORMAT", flag="--format")  # fmt: skip
    precisions: tuple = option(("float32", "int8"), "float32, int8 (static, per-channel), int8-a16 (ONNX int8 "
                               "with the first --int16-activations activations in 16 bits) and/or int8-f32 (LiteRT "
                               "int8 with the first --float-ops operators in float32)",
                               check=_validation.each(one_of(PRECISIONS)), nargs="+", metavar="P",
                               flag="--precision")  # fmt: skip
    int16_activations: int = option(2, "activations int8-a16 keeps in 16 bits, the input first",
                                    check=_validation.positive_int, parse=_options.parse_int, metavar="N")  # fmt: skip
    float_ops: int = option(1, "convolution and dense operators int8-f32 keeps in float32, the stem first",
                            check=_validation.positive_int, parse=_options.parse_int, metavar="N")
    keras: bool = option(True, "time the Keras model (predict_on_batch) next to the runtimes",
                         check=_validation.boolean)  # fmt: skip
    threads: int = option(None, "runtime intra-op threads (default: the CPU cores this process may use)",
                          check=_validation.optional(_validation.positive_int), parse=_options.parse_int,
                          metavar="N")  # fmt: skip
    batch_size: int = option(64, "images per batch call", check=_validation.positive_int, parse=_options.parse_int,
                             metavar="N")  # fmt: skip
    warmup: int = option(5, "untimed calls of each kind first", check=_validation.non_negative_int,
                         parse=_options.parse_int, metavar="N")  # fmt: skip
    repeats: int = option(30, "timed single-image calls (batch calls: a quarter, at least 5)",
                          check=_validation.positive_int, parse=_options.parse_int, metavar="N")  # fmt: skip
    profile: bool = option(False, "ONNX Runtime's profiler: time per operator type, single image",
                           check=_validation.boolean)  # fmt: skip
    seed: int = option(0, "fixes the random inputs and weights", check=_validation.non_negative_int,
                       parse=_options.parse_int, metavar="N")  # fmt: skip

    def __post_init__(self):
        _options.validate(self)
        if self.threads is None:
            object.__setattr__(self, "threads", _provenance.usable_cores())


def _targets(config):
    """(format, precision) pairs to export, checking backend and packages before any work."""
    from sepconv.export import _formats

    pairs = [(f, p) for f in config.formats for p in config.precisions if _ONLY_IN.get(p, f) == f]
    if not pairs:
        wanted = " or ".join(sorted({_ONLY_IN[p] for p in config.precisions}))
        raise ValueError(
            f"--precision {' '.join(config.precisions)} needs --format {wanted}. "
            f"Received: --format={' '.join(config.formats)}"
        )
    for fmt, precision in pairs:
        _formats.check_request("x" + _EXTENSIONS[fmt], "none" if precision == "float32" else "int8")
    return pairs


def _prepare(name, config, folder, rng, pairs):
    from sepconv.export import export_model, open_runtime

    keras.utils.set_random_seed(config.seed)
    model = models.create_model(name)
    shape = tuple(model.inputs[0].shape[1:])
    calibration = rng.standard_normal((_CALIBRATION, *shape)).astype("float32")
    info = {"model": name, "params": model.count_params(), "macs_per_image": analysis.profile_model(model).macs}
    callables, files = {}, {}
    if config.keras:
        callables["keras"] = model.predict_on_batch
    for fmt, precision in pairs:
        path = os.path.join(folder, f"{name}-{precision}{_EXTENSIONS[fmt]}")
        int8 = precision != "float32"
        written = export_model(model, path, quantize="int8" if int8 else "none", calibration=calibration if int8 else None,
                               int16_activations=config.int16_activations if precision == "int8-a16" else 0,
                               float_ops=config.float_ops if precision == "int8-f32" else 0)  # fmt: skip
        files[(fmt, precision)] = {"bytes": written["bytes"], "ops": written["ops"]}
        callables[(fmt, precision)] = open_runtime(path, config.threads)
    return model, info, callables, files


def _operator(args):
    """An ONNX Runtime profile event's operator; convolutions split into depthwise, 1x1 and the rest."""
    op = args["op_name"]
    shapes = args.get("input_type_shape") or []
    if op not in ("Conv", "FusedConv") or len(shapes) < 2:
        return op
    weight = next(iter(shapes[1].values()))  # (out, in / group, kh, kw)
    window = "x".join(map(str, weight[2:]))
    channels = next(iter(shapes[0].values()))[1]
    if weight[1] == 1 and channels > 1:
        return f"{op} depthwise {window}"
    return f"{op} {window}"


def _profile(path, x, threads, warmup, repeats):
    """Share of the single-image time per ONNX operator type, from ONNX Runtime's profiler.

    `warmup` + `repeats` runs are profiled; operator events of the warm-up runs (first
    allocations, kernel selection) are left out.
    """
    from sepconv.export._runtime import OnnxRuntime

    with tempfile.TemporaryDirectory() as folder:
        runtime = OnnxRuntime(path, threads, profile=os.path.join(folder, "ort"))
        for _ in range(warmup + repeats):
            runtime(x)
        with open(runtime.end_profiling(), encoding="utf-8") as f:
            events = json.load(f)
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    start = runs[warmup] if len(runs) > warmup else 0
    totals = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time") and event["ts"] >= start:
            totals[_operator(event["args"])] += event["dur"]
    whole = sum(totals.values()) or 1
    return {op: {"share": us / whole, "us_per_image": us / repeats} for op, us in totals.most_common()}


def run(config, progress=None):
    """Runs the export benchmark; returns a JSON-ready dict (environment, config, results)."""
    pairs = _targets(config)
    rng = np.random.default_rng(config.seed)
    results, profiles = [], {}
    with tempfile.TemporaryDirectory() as folder:
        prepared = {}
        for name in config.models:
            if progress:
                progress(f"exporting {name}")
            prepared[name] = _prepare(name, config, folder, rng, pairs)
        shape = tuple(prepared[config.models[0]][0].inputs[0].shape[1:])
        single = rng.standard_normal((1, *shape)).astype("float32")
        batch = rng.standard_normal((config.batch_size, *shape)).astype("float32")
        for kind, x, repeats in (("single", single, config.repeats), ("batch", batch, max(5, config.repeats // 4))):
            if progress:
                progress(f"timing {kind} calls")
            functions = {
                (name, target): (lambda f=f, x=x: f(x))
                for name, (_, _, callables, _) in prepared.items()
                for target, f in callables.items()
            }
            timings = _timing.measure_interleaved(functions, warmup=config.warmup, repeats=repeats)
            for (name, target), timing in timings.items():
                _, info, _, files = prepared[name]
                fmt, precision = ("keras", "float32") if target == "keras" else target
                results.append({
                    **info, "runtime": fmt, "precision": precision, "call": kind,
                    "batch_size": len(x), "time": timing.to_dict(), "images_per_s": len(x) / timing.median,
                    **(files.get(target, {}) if kind == "single" else {}),
                })  # fmt: skip
        if config.profile and "onnx" in config.formats and "float32" in config.precisions:
            for name in config.models:
                if progress:
                    progress(f"profiling {name} in ONNX Runtime")
                path = os.path.join(folder, f"{name}-float32.onnx")
                profiles[name] = _profile(path, single, config.threads, config.warmup, config.repeats)
    _add_ratios(results, config)
    return {
        "benchmark": "export",
        "environment": _provenance.environment(),
        "config": dataclasses.asdict(config),
        "conventions": {
            "time": "median and quartiles of `repeats` calls (batch: repeats // 4, at least 5) after `warmup`, "
            "every model and runtime alternating call by call",
            "speedup_vs_first": "time of the first model / time of this model, same runtime, precision and call",
            "int8_speedup": "time of the float32 file / time of the int8 (int8-a16, int8-f32) file, same model, "
            "runtime and call",
            "threads": "intra-op threads of ONNX Runtime and LiteRT; Keras uses the backend's pool (environment)",
            "macs": analysis.MAC_CONVENTION,
        },
        "results": results,
        "profiles": profiles,
    }


def _add_ratios(results, config):
    index = {(r["model"], r["runtime"], r["precision"], r["call"]): r for r in results}
    for r in results:
        first = index.get((config.models[0], r["runtime"], r["precision"], r["call"]))
        r["speedup_vs_first"] = first["time"]["median_ms"] / r["time"]["median_ms"] if first else None
        float_row = index.get((r["model"], r["runtime"], "float32", r["call"]))
        r["int8_speedup"] = (
            float_row["time"]["median_ms"] / r["time"]["median_ms"] if r["precision"] != "float32" and float_row else None
        )
