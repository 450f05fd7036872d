"""`sepconv bench tune`: measure every depthwise implementation once, cache the fastest.

Runs one forward pass of each model on a batch of the given size to collect
its depthwise calls, times forward+backward of every implementation on each
distinct call (compiled as `fit` compiles), and stores the fastest in the
autotune cache (`sepconv.kernels.autotune_cache_path()`), where "auto"
finds it from then on.
"""

import keras
import numpy as np

from sepconv import kernels, models
from sepconv.bench import _compiled, _timing
from sepconv.kernels import _autotune

_CALL_FIELDS = ("input_shape", "kernel_shape", "strides", "padding", "data_format", "dilation_rate", "dtype")


def model_calls(model, batch_size, seed=0):
    """The distinct depthwise calls of one forward pass of `model` on `batch_size` samples."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch_size, *model.input_shape[1:])).astype("float32")
    with kernels.record_depthwise_calls() as calls:
        model(x, training=True)
    distinct = []
    for call in calls:
        fields = {name: call[name] for name in _CALL_FIELDS}
        if None not in fields["input_shape"] and fields not in distinct:
            distinct.append(fields)
    return distinct


def tune_call(call, warmup=2, repeats=7, seed=0, store=True):
    """Times forward+backward of each implementation on one call; caches and returns the result."""
    rng = np.random.default_rng(seed)
    dtype = call["dtype"]
    x = keras.ops.convert_to_tensor(rng.standard_normal(call["input_shape"]).astype("float32"), dtype=dtype)
    kernel = keras.ops.convert_to_tensor(rng.standard_normal(call["kernel_shape"]).astype("float32"), dtype=dtype)
    arguments = (call["strides"], call["padding"], call["data_format"], call["dilation_rate"])
    names = [name for name in kernels.available_implementations(rank=len(call["strides"])) if name != "auto"]
    functions = {}
    for name in names:
        implementation = kernels.implementation(name)

        def depthwise(x, kernel, implementation=implementation):
            return implementation(x, kernel, *arguments)

        g = keras.ops.ones_like(depthwise(x, kernel))
        functions[name] = _compiled.gradient(depthwise, [x, kernel], g)
    timings = _timing.measure_interleaved(functions, warmup=warmup, repeats=repeats)
    medians = {name: timing.median * 1e3 for name, timing in timings.items()}
    best = min(medians, key=medians.get)
    if store:
        _autotune.store(_autotune.cache_key(**call), best, medians)
    return {"call": call, "timings_ms": medians, "implementation": best}


def autotune(model_names, batch_size=128, warmup=2, repeats=7, progress=None):
    """Tunes every distinct depthwise call of the named registry models; returns the choices."""
    results = []
    seen = []
    for name in model_names:
        model = models.create_model(name)
        for call in model_calls(model, batch_size):
            if call in seen:
                continue
            seen.append(call)
            if progress:
                progress(f"{name}: {call['input_shape']} x {call['kernel_shape']}")
            results.append({"model": name, **tune_call(call, warmup, repeats)})
    return {"cache": str(kernels.autotune_cache_path()), "device": kernels.device_name(), "results": results}
