"""Streaming calibration batches through both networks, layer by layer in network order.

For each converted layer the original model and the converted one run on the
same calibration batch while that layer's `call` is recorded in both (every
call of a shared layer counts); the original layer's pre-activation output on
its original inputs is the target, the converted network's inputs give the
patches (`_least_squares`). After the last batch the layer is refitted and
its new weights assigned, so the next layer already sees them. Both models run
in inference mode (BatchNorm uses its moving statistics).

Through the ReLU. A layer whose output goes through a ReLU (its own, a ReLU
layer after it, or one after an inference BatchNorm: `_relu`) only passes on
the positive part: where the original's ReLU is off, any output that keeps it
off is exact. The fit then follows Zhang et al. (TPAMI 2016, Sec. 3.2) in
their limit of a hard constraint: alternate between the targets ``z = y`` where
the original's ReLU is on and, elsewhere, the prediction's nearest point that
keeps it off (``min(prediction, 0)`` for a plain ReLU), and the least squares
to ``z``, which reuses ``X^T X`` (the layer's inputs do not depend on its own
weights; only ``X^T z`` changes, one more pass over the calibration data).
Each round lowers ``||X W - z||``; the error after the ReLU is at most that
distance scaled per channel by the BatchNorm (1 without one), so a round can
still raise it: it is measured in every pass, and the best weights on it are
kept.

Cost: per converted layer, one forward pass of each model over the
calibration set, plus the Gram updates (``positions * (C K)^2``
multiply-adds); with R ReLU rounds, R + 1 more passes for a layer that feeds a
ReLU (``positions * C K * F`` multiply-adds each), over its inputs kept from the
first pass (up to `KEPT_BYTES`; the models run again beyond that). Memory: see
`_least_squares`, plus those kept inputs (VGG's 64-channel 32x32 layers on
1,024 images: 512 MiB).
"""

import dataclasses
import math

import keras
import numpy as np

from sepconv.convert import _calibrate, _least_squares, _relu
from sepconv.data._load_progress import progress_bar

__all__ = ["LayerFit", "channel_blocks", "check_enough", "network_error", "reconstruct"]

KEPT_BYTES = 1 << 30  # a layer's calibration inputs kept for its ReLU rounds; above this the models run again


@dataclasses.dataclass(frozen=True)
class LayerFit:
    """What reconstruction did to one layer; errors are relative, before the activation."""

    error_before: float  # the SVD factors, on the converted network's inputs
    error_after: float
    start: str  # "svd" or "whitened": the initialization the iterations started from
    steps: tuple  # error after each pointwise solve and depthwise sweep
    positions: int  # rows of the least squares: output positions x calls x samples
    nbytes: int  # memory of the normal equations
    relu_errors: tuple = ()  # after the ReLU: the pre-activation fit's, then each ReLU round's
    passes: int = 1  # passes over the calibration data that ran both networks (kept inputs need none)


def _batches(data, batch_size):
    total = _calibrate.num_samples(data)
    for start in range(0, total, batch_size):
        yield keras.tree.map_structure(lambda x: x[start : start + batch_size], data)


def _unknowns(layer, rank):
    return layer.kernel.shape[-2] * rank + int(layer.use_bias)


def _too_small(path, samples, positions, unknowns):
    return ValueError(
        f"calibration is too small to reconstruct layer '{path}': {samples} samples give {positions} output "
        f"positions, fewer than its {unknowns} unknowns per filter (input channels x rank + bias). "
        f"Received: calibration size={samples}"
    )


def check_enough(path, layer, rank, sizes, samples):
    """Raises before any work when the layer's spatial sizes say the data is too small."""
    if sizes is None:
        return
    positions = samples * sum(math.prod(size) for size in sizes)
    if positions < _unknowns(layer, rank):
        raise _too_small(path, samples, positions, _unknowns(layer, rank))


def _steps(data, batch_size, layers):
    return math.ceil(_calibrate.num_samples(data) / batch_size) * layers


def channel_blocks(model, layers, data, batch_size=32, verbose=False):
    """`{id(layer): (C, K, K)}` per-channel patch covariances on the original network's inputs."""
    blocks = {}
    with progress_bar(verbose) as bar:
        task = bar.add_task("calibration: data-aware ranks", total=_steps(data, batch_size, 1))
        for done, batch in enumerate(_batches(data, batch_size), start=1):
            with _calibrate._recording(layers, {}) as inputs:
                model(batch, training=False)
            for layer in layers:
                taps = math.prod(layer.kernel_size)
                for x in inputs.get(id(layer), []):
                    rows = _least_squares.patches(layer, x).astype(np.float64)
                    rows = rows.reshape(len(rows), -1, taps)
                    block = np.einsum("nck,ncl->ckl", rows, rows)
                    blocks[id(layer)] = blocks.get(id(layer), 0) + block
            bar.update(task, completed=done)
    return blocks


class _LayerInputs:
    """Per calibration batch, `(original's input, converted's input)` of each call of a layer.

    Each iteration runs both models over the calibration data, except that the inputs
    of the first are kept, up to `KEPT_BYTES`, for the layer's later passes (ReLU
    rounds): neither depends on the layer's own weights (its earlier layers are
    fixed by then, and a shared layer gets no rounds).
    """

    def __init__(self, model, new_model, old, new, data, batch_size):
        self._models, self._layers, self._data, self._batch_size = (model, new_model), (old, new), data, batch_size
        self._kept = None
        self.passes = 0  # runs of both models over the data

    def _run(self):
        (model, new_model), (old, new) = self._models, self._layers
        self.passes += 1
        for batch in _batches(self._data, self._batch_size):
            with _calibrate._recording([old], {}) as original:
                model(batch, training=False)
            with _calibrate._recording([new], {}) as converted:
                new_model(batch, training=False)
            yield list(zip(original.get(id(old), []), converted.get(id(new), [])))

    def __iter__(self):
        if self._kept is not None:
            yield from self._kept
            return
        kept, size = [], 0
        for calls in self._run():
            if kept is not None:
                size += sum(_nbytes(x) for pair in calls for x in pair)
                if size <= KEPT_BYTES:
                    kept.append(calls)
                else:
                    kept = None
            yield calls
        self._kept = kept


def _nbytes(x):
    return math.prod(x.shape) * np.dtype(keras.backend.standardize_dtype(x.dtype)).itemsize


def _normal_equations(inputs, old, bar, task, done):
    taps = math.prod(old.kernel_size)
    normal = _least_squares.Normal(old.kernel.shape[-2] * taps, old.filters, bool(old.use_bias))
    for calls in inputs:
        for x_old, x_new in calls:
            normal.add(_least_squares.patches(old, x_new), _least_squares.pre_activation(old, x_old))
        done += 1
        bar.update(task, completed=done)
    return normal, done


def _relu_pass(inputs, old, new, relu, target, bar, task, done):
    """Error after the ReLU of `new`'s current weights; adds the ReLU targets to `target`."""
    scale, shift = relu
    squared_error = squared_norm = 0.0
    for calls in inputs:
        for x_old, x_new in calls:
            y = _least_squares.pre_activation(old, x_old).astype(np.float64)
            prediction = _least_squares.pre_activation(new, x_new).astype(np.float64)
            expected = np.maximum(scale * y + shift, 0.0)
            got = scale * prediction + shift
            squared_error += float(np.sum(np.square(np.maximum(got, 0.0) - expected)))
            squared_norm += float(np.sum(np.square(expected)))
            if target is not None:
                # Where the original's ReLU is off, the nearest prediction that keeps it off.
                safe = np.where(scale != 0, scale, 1.0)
                off = np.where(scale != 0, (np.minimum(got, 0.0) - shift) / safe, prediction)
                target.add_targets(_least_squares.patches(old, x_new), np.where(expected > 0, y, off))
        done += 1
        bar.update(task, completed=done)
    return (math.sqrt(squared_error / squared_norm) if squared_norm > 0 else 0.0), done


def _assign_fit(old, new, d, p, bias):
    depthwise, pointwise = _least_squares.pack(d, p, tuple(old.kernel_size))
    _assign(new.depthwise_kernel, depthwise)
    _assign(new.pointwise_kernel, pointwise)
    if old.use_bias:
        _assign(new.bias, bias)


def _through_relu(inputs, old, new, relu, normal, fit, rounds, iterations, ridge, bar, task, done):
    """`(d, p, bias, errors, done)`: `rounds` refits to the ReLU targets; the best weights after it."""
    d, p, bias = fit.depthwise, fit.pointwise, fit.bias
    best, errors = None, []
    for round_ in range(rounds + 1):
        _assign_fit(old, new, d, p, bias)
        target = normal.retargeted() if round_ < rounds else None
        error, done = _relu_pass(inputs, old, new, relu, target, bar, task, done)
        errors.append(error)
        if best is None or error < best[0]:
            best = (error, d, p, bias)
        if target is None:
            break
        refit = _least_squares.fit_layer(target, d, p, bias, iterations=iterations, ridge=ridge)
        d, p, bias = refit.depthwise, refit.pointwise, refit.bias
    _, d, p, bias = best
    return d, p, bias, tuple(errors), done


def network_error(model, new_model, data, batch_size=32):
    """``||new_model(x) - model(x)|| / ||model(x)||`` over all outputs and calibration samples."""
    squared_error = squared_norm = 0.0
    for batch in _batches(data, batch_size):
        expected = keras.tree.flatten(model(batch, training=False))
        got = keras.tree.flatten(new_model(batch, training=False))
        for a, b in zip(expected, got):
            a = keras.ops.convert_to_numpy(a).astype(np.float64)
            squared_error += float(np.sum(np.square(a - keras.ops.convert_to_numpy(b))))
            squared_norm += float(np.sum(np.square(a)))
    return math.sqrt(squared_error / squared_norm) if squared_norm > 0 else None


def _assign(variable, value):
    variable.assign(np.asarray(value).astype(keras.backend.standardize_dtype(variable.dtype)))


def reconstruct(
    model, new_model, targets, data, *, batch_size=32, iterations=4, relu_rounds=0, ridge=1e-6, verbose=False
):
    """Refits each converted layer in order; returns `{id(original layer): LayerFit}`.

    Args:
        model, new_model: the original and the converted model.
        targets: `(path, original conv, new separable layer)` in network order.
        data: calibration inputs (no labels).
        batch_size: samples per forward pass.
        iterations: rounds of alternating least squares (0: pointwise and bias only).
        relu_rounds: for layers whose output goes through a ReLU, refits to the
            targets that respect it (module docstring); each takes one more pass
            over `data`, and one pass measures the last. 0: pre-activation only.
        ridge: relative ridge term of every least-squares solve.
        verbose: a progress bar on stderr.
    """
    samples = _calibrate.num_samples(data)
    relus = _relu.relu_inputs(model, [old for _, old, _ in targets]) if relu_rounds else {}
    passes = sum(1 + (relu_rounds + 1 if relus.get(id(old)) is not None else 0) for _, old, _ in targets)
    fits = {}
    with progress_bar(verbose) as bar:
        task = bar.add_task("calibration: reconstruction", total=_steps(data, batch_size, passes))
        done = 0
        for path, old, new in targets:
            inputs = _LayerInputs(model, new_model, old, new, data, batch_size)
            normal, done = _normal_equations(inputs, old, bar, task, done)
            rank = new.depth_multiplier
            if normal.rows < _unknowns(old, rank):
                raise _too_small(path, samples, normal.rows, _unknowns(old, rank))
            d, p = _least_squares.unpack(
                keras.ops.convert_to_numpy(new.depthwise_kernel), keras.ops.convert_to_numpy(new.pointwise_kernel)
            )
            bias = keras.ops.convert_to_numpy(new.bias).astype(np.float64) if old.use_bias else np.zeros(old.filters)
            before = normal.error(np.matmul(d, p).reshape(-1, old.filters), bias)
            taps, channels = math.prod(old.kernel_size), d.shape[0]
            size = channels * taps
            blocks = normal.xx[:size, :size].reshape(channels, taps, channels, taps)
            blocks = blocks[np.arange(channels), :, np.arange(channels), :]  # (C, K, K)
            kernel = keras.ops.convert_to_numpy(old.kernel)
            wd, wp, _ = _least_squares.whitened_factors(kernel, blocks, rank, ridge)
            start = "svd"
            if normal.error(np.matmul(wd, wp).reshape(-1, old.filters), bias) < before:
                d, p, start = wd, wp, "whitened"
            fit = _least_squares.fit_layer(normal, d, p, bias, iterations=iterations, ridge=ridge)
            d, p, bias, after, relu_errors = fit.depthwise, fit.pointwise, fit.bias, min(fit.error_after, before), ()
            relu = relus.get(id(old))
            if relu is not None:
                d, p, bias, relu_errors, done = _through_relu(
                    inputs, old, new, relu, normal, fit, relu_rounds, iterations, ridge, bar, task, done
                )
                after = normal.error(np.matmul(d, p).reshape(-1, old.filters), bias)
            _assign_fit(old, new, d, p, bias)
            fits[id(old)] = LayerFit(
                error_before=before,
                error_after=after,
                start=start,
                steps=fit.steps,
                positions=normal.rows,
                nbytes=normal.nbytes,
                relu_errors=relu_errors,
                passes=inputs.passes,
            )
    return fits
