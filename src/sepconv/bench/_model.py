"""`sepconv bench model`: images/s of registry models, training and inference.

Each model is compiled as a user would (`model.compile(optimizer, loss)`,
`jit_compile` left to Keras' per-backend default) and fed one fixed
synthetic batch. Training times `model.train_on_batch` (forward, backward,
optimizer update: what each step of `fit` runs), inference times
`model.predict_on_batch`; both return numpy values, so every timed call has
finished. Models alternate call by call, so their ratios share the load.
FLOPs per image are 2 x the forward MACs of `sepconv.analysis.profile_model`
(x3 for a training step).
"""

import dataclasses

import numpy as np

from sepconv import _options, _provenance, _validation, analysis, kernels, models
from sepconv._options import one_of, option
from sepconv.bench import _machine, _timing

MODES = ("train", "inference")
DTYPE_POLICIES = ("float32", "bfloat16", "mixed_bfloat16")
BACKWARD_FACTOR = 3


def _model_name(name, argument):
    return models.check_model_name(name, argument)


def _first_call_compiles(value, name):
    value = _validation.integer(value, name)
    if value < 1:
        raise ValueError(f"{name} must be positive (the first call compiles). Received: {name}={value}")
    return value


@dataclasses.dataclass
class ModelBenchConfig(_timing.TimingOptions):
    """What `run` measures: each mode of each model. Ratios are to the first model."""

    # Keras-only baselines first: every ratio is to the tutorial's own regular model.
    models: tuple = option(("vgg_keras", "vgg_keras_separable", "vgg", "vgg_separable"),
                           "registry model names; ratios are to the first", check=_validation.each(_model_name),
                           nargs="+", metavar="MODEL", flag=False)  # fmt: skip
    modes: tuple = option(MODES, "what to time", check=_validation.each(one_of(MODES)), nargs="+", metavar="MODE",
                          flag="--mode")  # fmt: skip
    dtype_policy: str = option("float32", "Keras dtype policy", check=one_of(DTYPE_POLICIES), metavar="POLICY")
    optimizer: str = option("adam", "Keras optimizer name", check=_validation.string, metavar="NAME")
    warmup: int = option(2, "untimed calls first; at least 1, the first call compiles", check=_first_call_compiles,
                         parse=_options.parse_int, metavar="N")  # fmt: skip
    batch_norm: tuple = option(("fused",), "BatchNormalization training paths to time each model with: fused "
                               "(sepconv's), keras (Keras' composite)",
                               check=_validation.each(one_of(kernels.BATCH_NORM_IMPLEMENTATIONS)), nargs="+",
                               metavar="PATH")  # fmt: skip
    model_kwargs: dict = option(default_factory=dict, help="arguments for every model's builder, e.g. channels=64 "
                                "depth=2 (VALUE a Python literal, else text)",
                                check=_options.builder_arguments(reserved=("dtype_policy",), setter="--dtype-policy"),
                                parse=_options.parse_key_value, nargs="+", metavar="KEY=VALUE",
                                flag="--model-arg")  # fmt: skip

    def __post_init__(self):
        super().__post_init__()
        for name in self.models:  # a misspelled argument fails here, before any model compiles
            models.check_model_arguments(name, self.model_kwargs, argument="model_kwargs")


def _batch(model, batch_size, rng):
    shape = (batch_size, *model.input_shape[1:])
    x = rng.uniform(size=shape).astype("float32")
    y = rng.integers(0, model.output_shape[-1], size=(batch_size,))
    return x, y


def _label(name, batch_norm, config):
    return name if len(config.batch_norm) == 1 else f"{name} ({batch_norm} BN)"


def _prepare(name, batch_norm, config, rng):
    model = models.create_model(name, dtype_policy=config.dtype_policy, **config.model_kwargs)
    model.compile(optimizer=config.optimizer, loss="sparse_categorical_crossentropy")
    x, y = _batch(model, config.batch_size, rng)
    profile = analysis.profile_model(model, batch_size=1)
    with kernels.record_depthwise_calls() as calls, kernels.use_batch_norm_implementation(batch_norm):
        for _ in range(config.warmup):
            if "train" in config.modes:
                model.train_on_batch(x, y)
            if "inference" in config.modes:
                model.predict_on_batch(x)
    used = sorted({call["implementation"] for call in calls})

    def train():
        # PyTorch runs eagerly: the setting must hold during every timed call, not only the first.
        with kernels.use_batch_norm_implementation(batch_norm):
            return model.train_on_batch(x, y)

    functions = {"train": train, "inference": lambda: model.predict_on_batch(x)}
    info = {
        "model": _label(name, batch_norm, config),
        "batch_norm": batch_norm,
        "params": model.count_params(),
        "macs_per_image": profile.macs,
        "not_counted": list(profile.not_counted),
        "depthwise_implementations": used,
        "depthwise_calls": len(calls),
    }
    return info, functions


def _record(info, mode, timing, timings, peak, config):
    images_per_s = config.batch_size / timing.median
    factor = BACKWARD_FACTOR if mode == "train" else 1
    macs = info["macs_per_image"]
    flops = 2 * macs * factor if macs is not None else None
    achieved = flops * images_per_s if flops else None
    return {
        **info,
        "mode": mode,
        "batch_size": config.batch_size,
        "step": timing.to_dict(),
        "images_per_s": images_per_s,
        "images_per_s_q1_q3": [config.batch_size / t for t in reversed(timing.quartiles)],
        "speedup_vs_first": timings[_label(config.models[0], config.batch_norm[0], config)].median / timing.median,
        "flops_per_image": flops,
        "gflops_per_s": achieved / 1e9 if achieved else None,
        "fraction_of_matmul_peak": achieved / (peak["gflops_per_s"] * 1e9) if achieved else None,
    }


def run(config, progress=None):
    """Runs the model benchmark; returns a JSON-ready dict (environment, machine, config, results)."""
    with kernels.use_depthwise_implementation(config.implementation):
        rng = np.random.default_rng(config.seed)
        before = _machine.peak_matmul(config.matmul_size, "float32", 2, config.repeats)
        prepared = {}
        for name in config.models:
            for batch_norm in config.batch_norm:
                label = _label(name, batch_norm, config)
                if progress:
                    progress(f"compiling {label}")
                prepared[label] = _prepare(name, batch_norm, config, rng)
        timings = {}
        for mode in config.modes:
            if progress:
                progress(f"timing {mode}")
            functions = {name: functions[mode] for name, (_, functions) in prepared.items()}
            timings[mode] = _timing.measure_interleaved(functions, warmup=0, repeats=config.repeats)
        after = _machine.peak_matmul(config.matmul_size, "float32", 0, config.repeats)
    peak = _machine.best_peak(before, after)
    results = [
        _record(prepared[name][0], mode, timing, timings[mode], peak, config)
        for mode in timings
        for name, timing in timings[mode].items()
    ]
    return {
        "benchmark": "model",
        "environment": _provenance.environment(),
        "config": dataclasses.asdict(config),
        "machine": {"matmul": {"float32": peak}},
        "conventions": {
            "macs": analysis.MAC_CONVENTION,
            "train_flops": "3 x forward FLOPs per image (forward, input gradients, weight gradients)",
            "timings": "median and quartiles of `repeats` calls after `warmup` calls, models alternating",
            "speedup_vs_first": f"step time of {_label(config.models[0], config.batch_norm[0], config)} / step "
            "time of the model",
        },
        "results": results,
    }
