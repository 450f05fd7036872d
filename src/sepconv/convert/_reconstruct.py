"""Streaming calibration batches through both networks, layer by layer in network order.

For each converted layer the original model and the converted one run on the
same calibration batch while that layer's `call` is recorded in both (every
call of a shared layer counts); the original layer's pre-activation output on
its original inputs is the target, the converted network's inputs give the
patches (`_least_squares`). After the last batch the layer is refitted and
its new weights assigned, so the next layer already sees them. Both models run
in inference mode (BatchNorm uses its moving statistics).

Cost: per converted layer, one forward pass of each model over the
calibration set, plus the Gram updates (``positions * (C K)^2``
multiply-adds); memory: see `_least_squares`.
"""

import dataclasses
import math

import keras
import numpy as np

from sepconv.convert import _calibrate, _least_squares
from sepconv.data._load_progress import progress_bar

__all__ = ["LayerFit", "channel_blocks", "check_enough", "network_error", "reconstruct"]


@dataclasses.dataclass(frozen=True)
class LayerFit:
    """What reconstruction did to one layer; errors are relative, before the activation."""

    error_before: float  # the SVD factors, on the converted network's inputs
    error_after: float
    start: str  # "svd" or "whitened": the initialization the iterations started from
    steps: tuple  # error after each pointwise solve and depthwise sweep
    positions: int  # rows of the least squares: output positions x calls x samples
    nbytes: int  # memory of the normal equations


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


def _normal_equations(model, new_model, old, new, data, batch_size, bar, task, done):
    taps = math.prod(old.kernel_size)
    normal = _least_squares.Normal(old.kernel.shape[-2] * taps, old.filters, bool(old.use_bias))
    for batch in _batches(data, batch_size):
        with _calibrate._recording([old], {}) as original:
            model(batch, training=False)
        with _calibrate._recording([new], {}) as converted:
            new_model(batch, training=False)
        for x_old, x_new in zip(original.get(id(old), []), converted.get(id(new), [])):
            normal.add(_least_squares.patches(old, x_new), _least_squares.pre_activation(old, x_old))
        done += 1
        bar.update(task, completed=done)
    return normal, done


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


def reconstruct(model, new_model, targets, data, *, batch_size=32, iterations=4, ridge=1e-6, verbose=False):
    """Refits each converted layer in order; returns `{id(original layer): LayerFit}`.

    Args:
        model, new_model: the original and the converted model.
        targets: `(path, original conv, new separable layer)` in network order.
        data: calibration inputs (no labels).
        batch_size: samples per forward pass.
        iterations: rounds of alternating least squares (0: pointwise and bias only).
        ridge: relative ridge term of every least-squares solve.
        verbose: a progress bar on stderr.
    """
    samples = _calibrate.num_samples(data)
    fits = {}
    with progress_bar(verbose) as bar:
        task = bar.add_task("calibration: reconstruction", total=_steps(data, batch_size, len(targets)))
        done = 0
        for path, old, new in targets:
            normal, done = _normal_equations(model, new_model, old, new, data, batch_size, bar, task, done)
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
            depthwise, pointwise = _least_squares.pack(fit.depthwise, fit.pointwise, tuple(old.kernel_size))
            _assign(new.depthwise_kernel, depthwise)
            _assign(new.pointwise_kernel, pointwise)
            if old.use_bias:
                _assign(new.bias, fit.bias)
            fits[id(old)] = LayerFit(
                error_before=before,
                error_after=min(fit.error_after, before),
                start=start,
                steps=fit.steps,
                positions=normal.rows,
                nbytes=normal.nbytes,
            )
    return fits
