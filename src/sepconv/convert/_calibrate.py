"""Each converted layer's output error, measured on its own original inputs.

The original model runs on a calibration batch while each target layer's
`call` is wrapped, for the duration of the pass only, to record its inputs
(every call of a shared layer counts). The original layer and its
replacement then run on those inputs, and the error is

    ||y_conv - y_separable||_F / ||y_conv||_F

over all recorded calls, where ``y`` is the layer's full output (bias and
activation included). Errors do not compound: each layer sees the inputs
the original model gives it.
"""

import contextlib

import keras
import numpy as np

__all__ = ["num_samples", "output_errors", "random_calibration"]

RANDOM_SAMPLES = 8


@contextlib.contextmanager
def _recording(layers, inputs):
    """Appends each call's first argument to `inputs[id(layer)]` while active."""
    try:
        for layer in layers:

            def record(x, *args, _call=layer.call, _key=id(layer), **kwargs):
                inputs.setdefault(_key, []).append(x)
                return _call(x, *args, **kwargs)

            layer.call = record
        yield inputs
    finally:
        for layer in layers:
            if "call" in vars(layer):
                del layer.call


def num_samples(data):
    """The number of samples in `data`: an array, or a list or dict of arrays."""
    shapes = [tuple(getattr(x, "shape", ())) for x in keras.tree.flatten(data)]
    sizes = {shape[0] if shape else 0 for shape in shapes}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            "calibration must hold the same positive number of samples in every input. "
            f"Received: calibration sizes={sorted(sizes)}"
        )
    return sizes.pop()


def output_errors(model, pairs, data, batch_size=32):
    """`{id(original layer): relative error}` for `pairs` of (original, converted)."""
    squared_error = {id(old): 0.0 for old, _ in pairs}
    squared_norm = dict(squared_error)
    total = num_samples(data)
    for start in range(0, total, batch_size):
        batch = keras.tree.map_structure(lambda x: x[start : start + batch_size], data)
        with _recording([old for old, _ in pairs], {}) as inputs:
            model(batch, training=False)
        for old, new in pairs:
            for x in inputs.get(id(old), []):
                expected = keras.ops.convert_to_numpy(old(x)).astype(np.float64)
                got = keras.ops.convert_to_numpy(new(x)).astype(np.float64)
                squared_error[id(old)] += float(np.sum(np.square(expected - got)))
                squared_norm[id(old)] += float(np.sum(np.square(expected)))
    return {
        key: (np.sqrt(squared_error[key] / squared_norm[key]) if squared_norm[key] > 0 else None)
        for key in squared_error
    }


def random_calibration(model):
    """`(data, description)`: N(0, 1) samples of the model's input shapes, or `(None, why)`."""
    shapes = [tuple(x.shape[1:]) for x in model.inputs]
    if any(None in shape for shape in shapes) or any(
        not keras.backend.is_float_dtype(x.dtype) for x in model.inputs
    ):
        return None, (
            "not measured: the model's inputs "
            f"{[tuple(x.shape) for x in model.inputs]} are not fully known float tensors; "
            "pass calibration data"
        )
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((RANDOM_SAMPLES, *shape)).astype("float32") for shape in shapes]
    return (data[0] if len(data) == 1 else data), (
        f"{RANDOM_SAMPLES} random samples from N(0, 1) (no calibration data given)"
    )
