"""`convert`: a trained model's convolutions as depthwise separable layers."""

import dataclasses
import functools

import keras
import numpy as np

from sepconv import _validation, analysis
from sepconv.convert import (
    _calibrate,
    _costs,
    _factorize,
    _least_squares,
    _ranks,
    _reconstruct,
    _rewrite,
    _targets,
)
from sepconv.convert._report import ConversionReport, ConvertedLayer, SkippedLayer

__all__ = ["convert"]

_METRICS = ("params", "macs")


@dataclasses.dataclass(eq=False)
class _Candidate:
    path: str
    layer: object
    kernel: np.ndarray
    singular: np.ndarray
    full_rank: int
    sizes: list | None  # spatial output size of each call
    data_singular: np.ndarray | None = None  # singular values in the metric of the layer's inputs

    @functools.cached_property
    def before(self):
        return dict(zip(_METRICS, _costs.conv_costs(self.layer, self.sizes)))

    def cost(self, rank):
        return dict(zip(_METRICS, _costs.separable_costs(self.layer, self.sizes, rank)))


def _fraction(value, name):
    return float(_validation.number(value, name, low=0.0, high=1.0, low_open=True))


def _rule(rank, energy, budget, budget_metric):
    given = {k: v for k, v in (("rank", rank), ("energy", energy), ("budget", budget)) if v is not None}
    if len(given) > 1:
        received = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise ValueError(f"Pass at most one of rank, energy, budget. Received: {received}")
    _validation.choice(budget_metric, _METRICS, "budget_metric")
    if rank is not None:
        return f"rank={_validation.positive_int(rank, 'rank')}"
    if energy is not None:
        return f"energy={_fraction(energy, 'energy')}"
    if budget is not None:
        return f"budget={_fraction(budget, 'budget')} of {budget_metric}"
    return "full rank (exact)"


def _check_model(model):
    if not isinstance(model, keras.Model) or not _targets.rebuildable(model):
        raise TypeError(
            "model must be a Functional or Sequential Keras model (subclassed models cannot be "
            f"rebuilt). Received: model={type(model).__name__}"
        )
    if not model.built or not model.weights:
        raise ValueError(f"model must be built (with weights) before converting. Received: model={model.name}")


def _profile(model):
    """`(profile, None)`, or `(None, why)` when the model's shapes are not all known."""
    shapes = [tuple(x.shape) for x in model.inputs]
    if any(None in shape[1:] for shape in shapes):
        return None, f"the model's input shapes {shapes} have unknown dimensions besides the batch"
    try:
        return analysis.profile_model(model), None
    except ValueError as error:
        return None, str(error).splitlines()[0]


def _nothing_to_convert(model, selection):
    skipped = "; ".join(f"'{path}': {reason}" for path, _, reason in selection.skipped[:5])
    more = f" (and {len(selection.skipped) - 5} more)" if len(selection.skipped) > 5 else ""
    found = f" Skipped: {skipped}{more}." if skipped else ""
    return ValueError(
        "Nothing to convert: no Conv1D/Conv2D layer with groups=1 and a kernel larger than 1x1 "
        f"is selected.{found} Received: model={model.name}"
    )


def _notes(candidate, requested_rank, rank):
    layer, notes = candidate.layer, []
    if requested_rank is not None and requested_rank > rank:
        notes.append(f"rank {requested_rank} clipped to the full rank {rank} (exact)")
    if layer.kernel_constraint is not None:
        notes.append("kernel_constraint not carried over (no depthwise/pointwise counterpart)")
    if getattr(layer, "lora_enabled", False):
        notes.append("LoRA update merged into the kernel before factorizing")
    return tuple(notes)


def _check_shapes(model, data):
    """Each calibration input must have its model input's shape (unknown dimensions match any)."""
    arrays = keras.tree.flatten(data)
    expected = [tuple(x.shape[1:]) for x in model.inputs]
    received = [tuple(getattr(x, "shape", ()))[1:] for x in arrays]
    fits = len(arrays) == len(expected) and all(
        len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))
        for got, want in zip(received, expected)
    )
    if not fits:
        want = expected[0] if len(expected) == 1 else expected
        shapes = [tuple(getattr(x, "shape", ())) for x in arrays]
        raise ValueError(
            f"calibration samples must have the model's input shape {want}. "
            f"Received: calibration shape={shapes[0] if len(shapes) == 1 else shapes}"
        )


def _calibration(model, calibration, reconstruct):
    """`(data or None, description)` for the `calibration` argument."""
    if reconstruct and (calibration is None or isinstance(calibration, str)):
        raise ValueError(
            "reconstruct needs calibration data: an array of model inputs (no labels). "
            f"Received: calibration={calibration!r}"
        )
    if calibration is None:
        return None, "not measured (calibration=None)"
    if isinstance(calibration, str):
        if calibration != "random":
            raise ValueError(
                f'calibration must be "random", None or model inputs. Received: calibration={calibration!r}'
            )
        return _calibrate.random_calibration(model)
    samples = _calibrate.num_samples(calibration)
    _check_shapes(model, calibration)
    return calibration, f"{samples} samples given"


def _candidate(path, layer, profile):
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
    rows = [] if profile is None else [row for row in profile.layers if row.name == path]
    return _Candidate(
        path=path,
        layer=layer,
        kernel=kernel,
        singular=_factorize.singular_values(kernel),
        full_rank=_factorize.full_rank(kernel.shape),
        sizes=_costs.output_sizes(layer, rows) if rows else None,
    )


def _row(candidate, rank, requested_rank, output_error, fit=None):
    layer, after = candidate.layer, candidate.cost(rank)
    return ConvertedLayer(
        name=candidate.path,
        class_name=type(layer).__name__,
        kernel_size=tuple(layer.kernel_size),
        in_channels=int(candidate.kernel.shape[-2]),
        filters=layer.filters,
        rank=rank,
        full_rank=candidate.full_rank,
        params_before=candidate.before["params"],
        params_after=after["params"],
        macs_before=candidate.before["macs"],
        macs_after=after["macs"],
        energy=_factorize.energy_kept(candidate.singular, rank),
        output_error=output_error,
        notes=_notes(candidate, requested_rank, rank),
        reconstruction_error_before=None if fit is None else fit.error_before,
        reconstruction_error_after=None if fit is None else fit.error_after,
        reconstruction_steps=() if fit is None else fit.steps,
        reconstruction_start=None if fit is None else fit.start,
        reconstruction_relu_errors=() if fit is None else fit.relu_errors,
        reconstruction_passes=0 if fit is None else fit.passes,
    )


def _relu_note(fits, relu_rounds):
    if not relu_rounds:
        return "no ReLU rounds (relu_rounds=0)"
    relu = sum(bool(fit.relu_errors) for fit in fits.values())
    if not relu:
        return "no ReLU rounds (no converted layer's output goes through a ReLU)"
    return f"then {relu_rounds} round(s) through the ReLU on the {relu} layer(s) whose output goes through one"


def convert(
    model,
    *,
    rank=None,
    energy=None,
    budget=None,
    budget_metric="params",
    include=None,
    exclude=None,
    calibration="random",
    calibration_batch_size=32,
    reconstruct=False,
    iterations=4,
    relu_rounds=2,
    ridge=1e-6,
    verbose=False,
):
    """Replaces trained convolutions by depthwise separable ones that keep their weights.

    Every selected Keras `Conv1D`/`Conv2D` (groups=1, kernel larger than 1x1)
    becomes a `sepconv` `DepthwiseSeparableConv1D`/`2D` with the same name,
    filters, kernel size, strides, padding, dilation, data format, activation
    and bias (the conv bias is the pointwise bias; no depthwise bias). Its
    weights come from the SVD of each input channel's kernel slice (Network
    Decoupling, Guo et al., BMVC 2018, arXiv:1808.05517; see
    `sepconv.convert._factorize`): at full rank ``min(kernel taps, filters)``
    the new layer computes the same function, below it the best approximation
    of that rank per channel. Everything else in the model is copied, weights
    included; Sequential and Functional models, nested ones, branches and
    shared layers are rebuilt as they are. The input model is not modified.

    Choose at most one of `rank`, `energy`, `budget` (default: full rank):

    Args:
        model: a built Functional or Sequential Keras model.
        rank: the depth multiplier of every converted layer, clipped per
            layer to its full rank (the report says where).
        energy: in (0, 1]; per layer the smallest rank keeping this fraction
            of the kernel's squared Frobenius norm.
        budget: in (0, 1]; the converted model keeps at most this fraction of
            the original model's parameters or MACs (`budget_metric`), ranks
            chosen greedily to lose the least energy (see `_ranks`).
        budget_metric: "params" or "macs".
        include, exclude: glob pattern(s) matched against layer names, paths
            through nested models ("block/conv") and class names ("Conv2D").
        calibration: model inputs (an array, or a list for several inputs) on
            which each converted layer's relative output error is measured;
            "random" (the default): 8 samples from N(0, 1) when the input
            shape is known; None: not measured (the original model never runs).
        calibration_batch_size: samples per forward pass while measuring or
            reconstructing (calibration data is streamed in such batches).
        reconstruct: after the SVD, refit each converted layer, in network
            order, to the original layer's pre-activation outputs on the
            `calibration` data, fed the converted network's own inputs (see
            `sepconv.convert._least_squares`); with `budget`, ranks are then
            chosen by the output error on that data, not by kernel energy.
            Needs calibration data (no labels).
        iterations: rounds of alternating least squares (pointwise kernel and
            bias, then depthwise filters); 0 solves the pointwise part only.
        relu_rounds: with `reconstruct`, layers whose output goes through a
            ReLU (their own, or after a BatchNorm) are then refitted this many
            times to what passes it (where the original's ReLU is off, the
            output need only keep it off; see `sepconv.convert._reconstruct`):
            R rounds take R + 1 more passes over the calibration data (the
            last measures); 0: fit the pre-activation outputs only.
        ridge: relative ridge term of each least-squares solve.
        verbose: progress bars on stderr while calibration data streams.

    Returns:
        `(new_model, report)`: the rebuilt model and a `ConversionReport`.

    Raises:
        TypeError: `model` is not a Functional or Sequential model.
        ValueError: bad arguments, an unmet budget, calibration data of the
            wrong shape or too small to reconstruct, or nothing to convert.
    """
    _check_model(model)
    rule = _rule(rank, energy, budget, budget_metric)
    _validation.boolean(reconstruct, "reconstruct")
    iterations = _validation.non_negative_int(iterations, "iterations")
    relu_rounds = _validation.non_negative_int(relu_rounds, "relu_rounds")
    ridge = _validation.number(ridge, "ridge", low=0.0)
    calibration, calibration_note = _calibration(model, calibration, reconstruct)
    selection = _targets.select_layers(model, include, exclude)
    if not selection.convertible:
        raise _nothing_to_convert(model, selection)

    profile, why_uncounted = _profile(model)
    candidates = [_candidate(path, layer, profile) for path, layer in selection.convertible]
    if budget is not None and budget_metric == "macs" and any(c.sizes is None for c in candidates):
        raise ValueError(
            f"budget on MACs needs a model whose shapes are known ({why_uncounted}). Received: budget={budget}"
        )
    total = None if budget is None else model.count_params() if budget_metric == "params" else profile.macs
    if reconstruct and budget is not None:
        # Rank where it pays on the data: the singular values of each channel's slice in the
        # metric of its inputs (`_least_squares.whitened_factors`) replace the kernel's own.
        _ranks.check_budget(candidates, budget, budget_metric, total)
        rule += ", ranks by output error on the calibration data"
        blocks = _reconstruct.channel_blocks(
            model, [c.layer for c in candidates], calibration, calibration_batch_size, verbose
        )
        for c in candidates:
            c.data_singular = _least_squares.whitened_factors(c.kernel, blocks[id(c.layer)], 1, ridge)[2]
    if rank is not None:
        ranks = _ranks.fixed_ranks(candidates, rank)
    elif energy is not None:
        ranks = _ranks.energy_ranks(candidates, energy)
    elif budget is not None:
        ranks = _ranks.budget_ranks(candidates, budget, budget_metric, total)
    else:
        ranks = [c.full_rank for c in candidates]

    if reconstruct:
        samples = _calibrate.num_samples(calibration)
        for c, r in zip(candidates, ranks):
            _reconstruct.check_enough(c.path, c.layer, r, c.sizes, samples)
    replacements = {}
    for candidate, r in zip(candidates, ranks):
        depthwise, pointwise = _factorize.factorize(candidate.kernel, r)
        replacements[id(candidate.layer)] = (_rewrite.separable_like(candidate.layer, r), depthwise, pointwise)
    new_model, clones = _rewrite.rebuild(model, replacements)

    fits, reconstruction, network_errors = {}, "not done (reconstruct=False)", (None, None)
    if reconstruct:
        targets = [(c.path, c.layer, clones[id(c.layer)]) for c in candidates]
        error_before = _reconstruct.network_error(model, new_model, calibration, calibration_batch_size)
        fits = _reconstruct.reconstruct(
            model,
            new_model,
            targets,
            calibration,
            batch_size=calibration_batch_size,
            iterations=iterations,
            relu_rounds=relu_rounds,
            ridge=ridge,
            verbose=verbose,
        )
        error_after = _reconstruct.network_error(model, new_model, calibration, calibration_batch_size)
        network_errors = (error_before, error_after)
        largest = max(candidates, key=lambda c: fits[id(c.layer)].nbytes)
        reconstruction = (
            f"alternating least squares on the pre-activation outputs, {iterations} iteration(s), "
            f"{_relu_note(fits, relu_rounds)}, ridge {ridge:g}, {calibration_note}, "
            f"batches of {calibration_batch_size}; the largest layer "
            f"'{largest.path}' held {fits[id(largest.layer)].nbytes / 2**20:.1f} MiB of normal equations"
        )
    errors = {}
    if calibration is not None:
        pairs = [(c.layer, clones[id(c.layer)]) for c in candidates]
        errors = _calibrate.output_errors(model, pairs, calibration, calibration_batch_size)
    rows = [_row(c, r, rank, errors.get(id(c.layer)), fits.get(id(c.layer))) for c, r in zip(candidates, ranks)]
    new_profile = None if profile is None else analysis.profile_model(new_model)
    counting = f"sepconv.analysis closed forms and profile_model. {analysis.MAC_CONVENTION}"
    if profile is None:
        counting += f" MACs not counted: {why_uncounted}"
    report = ConversionReport(
        model_name=model.name,
        rule=rule,
        layers=tuple(rows),
        skipped=tuple(SkippedLayer(path, type(layer).__name__, reason) for path, layer, reason in selection.skipped),
        params_before=model.count_params(),
        params_after=new_model.count_params(),
        macs_before=None if profile is None else profile.macs,
        macs_after=None if new_profile is None else new_profile.macs,
        calibration=calibration_note,
        counting=counting,
        reconstruction=reconstruction,
        network_error_before=network_errors[0],
        network_error_after=network_errors[1],
    )
    return new_model, report
