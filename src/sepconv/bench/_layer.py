"""`sepconv bench layer`: one depthwise, pointwise, separable or regular convolution.

For every shape, dtype, data format and direction (forward, forward+backward)
it times sepconv's computation, Keras' built-in layer for the same
operation, and a copy of the input tensor, alternating them in one run.
MACs and bytes come from `sepconv.analysis.profile_model` on the Keras
layer (forward pass; each tensor read or written once). Forward+backward
counts 3x both: the input gradient and the kernel gradient each cost one
forward's MACs and move one forward's bytes. A case's roofline time is
max(FLOPs / peak FLOP/s, bytes / copy bandwidth), with the peak FLOP/s of a
large matmul and the bandwidth of the copy, both measured in the same run.
"""

import dataclasses

import keras
import numpy as np

import sepconv
from sepconv import _options, _provenance, _validation, analysis, kernels
from sepconv._options import one_of, option
from sepconv.bench import _compiled, _machine, _timing

OPS = ("depthwise", "pointwise", "dsc", "conv")
MODES = ("forward", "forward_backward")
DTYPES = ("float32", "bfloat16")
SHAPES = ("32x32x64", "16x16x128", "8x8x256")  # the tutorial VGG's 3x3 convolutions
BACKWARD_FACTOR = 3  # forward + input gradient + kernel gradient


def _shape(text, name):
    parse_shape(text)
    return text


@dataclasses.dataclass
class LayerBenchConfig(_timing.TimingOptions):
    """What `run` measures (every combination of the tuples)."""

    ops: tuple = option(OPS, "operations to time", check=_validation.each(one_of(OPS)), nargs="+", metavar="OP")
    shapes: tuple = option(SHAPES, "input shapes HxWxC or HxWxC:FILTERS (filters default C)",
                           check=_validation.each(_shape), nargs="+", metavar="HxWxC[:F]")  # fmt: skip
    dtypes: tuple = option(("float32",), "tensor dtypes", check=_validation.each(one_of(DTYPES)), nargs="+",
                           metavar="DTYPE", flag="--dtype")  # fmt: skip
    data_formats: tuple = option(("channels_last",), "data formats",
                                 check=_validation.each(one_of(("channels_last", "channels_first"))), nargs="+",
                                 metavar="FORMAT", flag="--data-format")  # fmt: skip
    modes: tuple = option(MODES, "forward and/or forward+backward", check=_validation.each(one_of(MODES)),
                          nargs="+", metavar="MODE", flag="--mode")  # fmt: skip
    kernel_size: int = option(3, "kernel side", check=_validation.positive_int, parse=_options.parse_int,
                              metavar="K")  # fmt: skip


def parse_shape(text):
    """'32x32x64' -> (32, 32, 64, 64); '32x32x64:128' -> (32, 32, 64, 128): H, W, C, filters."""
    spatial, _, filters = str(text).partition(":")
    parts = spatial.lower().split("x")
    try:
        values = [int(part) for part in parts] + ([int(filters)] if filters else [])
    except ValueError:
        values = []
    if len(parts) != 3 or not values or any(v <= 0 for v in values):
        raise ValueError(f"shape must be HxWxC or HxWxC:FILTERS, e.g. 32x32x64. Received: shape={text!r}")
    height, width, channels = values[:3]
    return height, width, channels, values[3] if filters else channels


class _DepthwiseStep(keras.layers.Layer):
    """sepconv's depthwise step alone (no bias), through the selection point."""

    def __init__(self, kernel_size, data_format, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.data_format = (kernel_size, kernel_size), data_format

    def build(self, input_shape):
        channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        self.depthwise_kernel = self.add_weight(name="depthwise_kernel", shape=self.kernel_size + (channels, 1))

    def call(self, x):
        return kernels.depthwise_conv(x, self.depthwise_kernel, (1, 1), "same", self.data_format, (1, 1))


class _PointwiseStep(keras.layers.Layer):
    """sepconv's pointwise step alone (no bias), through the selection point."""

    def __init__(self, filters, data_format, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.data_format = filters, data_format

    def build(self, input_shape):
        channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        self.pointwise_kernel = self.add_weight(name="pointwise_kernel", shape=(1, 1, channels, self.filters))

    def call(self, x):
        return kernels.pointwise_conv(x, self.pointwise_kernel, self.data_format)


def _layers(op, filters, kernel_size, data_format, dtype):
    """(sepconv's layer or None, Keras' built-in layer) computing `op`."""
    common = dict(data_format=data_format, dtype=dtype)
    if op == "depthwise":
        return (
            _DepthwiseStep(kernel_size, name="sepconv_depthwise", **common),
            keras.layers.DepthwiseConv2D(kernel_size, padding="same", use_bias=False, **common),
        )
    if op == "pointwise":
        return (
            _PointwiseStep(filters, name="sepconv_pointwise", **common),
            keras.layers.Conv2D(filters, 1, use_bias=False, **common),
        )
    if op == "dsc":
        return (
            sepconv.DepthwiseSeparableConv2D(filters, kernel_size, padding="same", **common),
            keras.layers.SeparableConv2D(filters, kernel_size, padding="same", **common),
        )
    return None, keras.layers.Conv2D(filters, kernel_size, padding="same", **common)


def _counts(layer, input_shape, batch_size, dtype):
    itemsize = np.dtype(_numpy_dtype(dtype)).itemsize
    profile = analysis.profile_model(layer, input_shape=tuple(input_shape), batch_size=batch_size, dtype_bytes=itemsize)
    return profile.macs, profile.bytes_moved


def _numpy_dtype(dtype):
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return dtype


def _tensor(rng, shape, dtype):
    return keras.ops.convert_to_tensor(rng.standard_normal(shape).astype("float32"), dtype=dtype)


def _case(op, shape, config, dtype, data_format, rng):
    """Timings, counts and copy bandwidth of one op at one shape, for each mode."""
    height, width, channels, filters = shape
    batch = config.batch_size
    channels_last = data_format == "channels_last"
    sample = (height, width, channels) if channels_last else (channels, height, width)
    x = _tensor(rng, (batch, *sample), dtype)
    ours, theirs = _layers(op, filters, config.kernel_size, data_format, dtype)
    for layer in (ours, theirs):
        if layer is not None:
            layer.build(tuple(x.shape))
    g = _tensor(rng, tuple(theirs.compute_output_shape(tuple(x.shape))), dtype)
    # Counts do not depend on the data format; count the channels_last twin,
    # which every backend can run (TensorFlow's CPU convolutions cannot run NCHW).
    twin = _layers(op, filters, config.kernel_size, "channels_last", dtype)[1]
    macs, nbytes = _counts(twin, (height, width, channels), batch, dtype)
    implementation = None
    if op in ("depthwise", "dsc"):
        implementation = kernels.resolve(x, ours.depthwise_kernel, (1, 1), "same", data_format, (1, 1))
    itemsize = np.dtype(_numpy_dtype(dtype)).itemsize
    records = []
    for mode in config.modes:
        make = _compiled.forward if mode == "forward" else lambda layer, x: _compiled.forward_backward(layer, x, g)
        functions = {"keras": make(theirs, x), "copy": _compiled.copy(x)}
        if ours is not None:
            functions = {"ours": make(ours, x), **functions}
        unsupported = _unsupported(functions, "keras")
        timings = _timing.measure_interleaved(functions, warmup=config.warmup, repeats=config.repeats)
        factor = 1 if mode == "forward" else BACKWARD_FACTOR
        record = {
            "op": op,
            "shape": [height, width, channels],
            "filters": filters,
            "batch_size": batch,
            "dtype": dtype,
            "data_format": data_format,
            "mode": mode,
            "implementation": implementation,
            "macs": macs * factor,
            "flops": 2 * macs * factor,
            "bytes": nbytes * factor,
            "arithmetic_intensity": 2 * macs / nbytes,
            "copy_gb_per_s": 2 * int(np.prod(x.shape)) * itemsize / timings["copy"].median / 1e9,
        }
        record.update({name: timing.to_dict() for name, timing in timings.items()})
        if unsupported:
            record["keras_error"] = unsupported
        records.append(record)
    return records


def _unsupported(functions, name):
    """Drops `functions[name]` if its first call fails (Keras' TensorFlow convolutions
    reject channels_first on CPU); returns the error, or None."""
    try:
        _timing.sync(functions[name]())
    except Exception as error:  # whatever the backend raises for an unsupported case
        del functions[name]
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return None


def _add_roofline(record, peak_flops):
    """Achieved rates, roofline time and bound of one record, given the machine's peak."""
    compute_time = record["flops"] / peak_flops
    memory_time = record["bytes"] / (record["copy_gb_per_s"] * 1e9)
    roofline = max(compute_time, memory_time)
    record["roofline_ms"] = roofline * 1e3
    record["bound"] = "memory" if memory_time >= compute_time else "compute"
    for name in ("ours", "keras"):
        if name in record:
            seconds = record[name]["median_ms"] / 1e3
            record[f"{name}_gflops_per_s"] = record["flops"] / seconds / 1e9
            record[f"{name}_gb_per_s"] = record["bytes"] / seconds / 1e9
            record[f"{name}_roofline_fraction"] = roofline / seconds
            record[f"{name}_vs_copy"] = record[name]["median_ms"] / record["copy"]["median_ms"]
    if "ours" in record and "keras" in record:
        record["speedup_vs_keras"] = record["keras"]["median_ms"] / record["ours"]["median_ms"]
    return record


def run(config, progress=None):
    """Runs the layer benchmark; returns a JSON-ready dict (environment, machine, config, results)."""
    with kernels.use_depthwise_implementation(config.implementation):
        rng = np.random.default_rng(config.seed)
        size, warmup, repeats = config.matmul_size, config.warmup, config.repeats
        before = {d: _machine.peak_matmul(size, d, warmup, repeats) for d in config.dtypes}
        results = []
        for dtype in config.dtypes:
            for data_format in config.data_formats:
                for text in config.shapes:
                    for op in config.ops:
                        if progress:
                            progress(f"{op} {text} {dtype} {data_format}")
                        results.extend(_case(op, parse_shape(text), config, dtype, data_format, rng))
        after = {d: _machine.peak_matmul(size, d, 0, repeats) for d in config.dtypes}
    peaks = {dtype: _machine.best_peak(before[dtype], after[dtype]) for dtype in config.dtypes}
    for record in results:
        _add_roofline(record, peaks[record["dtype"]]["gflops_per_s"] * 1e9)
    return {
        "benchmark": "layer",
        "environment": _provenance.environment(),
        "config": dataclasses.asdict(config),
        "machine": {"matmul": peaks},
        "conventions": {
            "macs": analysis.MAC_CONVENTION,
            "bytes": "each input, output and weight tensor read or written once per forward (roofline model)",
            "forward_backward": "MACs and bytes x3: forward, input gradient, kernel gradient",
            "roofline_ms": "max(FLOPs / measured matmul peak, bytes / measured copy bandwidth of the input); "
            "the peak is the best matmul measured before and after the cases",
            "timings": "median and quartiles of `repeats` synchronized calls after `warmup` calls, "
            "ours / keras / copy alternating",
        },
        "results": results,
    }
