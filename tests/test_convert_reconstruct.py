"""Data-aware reconstruction and distillation against numpy least squares and Keras' own layers."""

import math
import re

import keras
import numpy as np
import pytest
import reference
from helpers import BACKEND
from test_convert import branchy_model, numpy, randomize, relative_error, single_conv

from sepconv.convert import convert, factorize, finetune
from sepconv.convert._features import feature_loss
from sepconv.convert._finetune import _Distilled, distillation_loss
from sepconv.data import Batches


def linear_twin(conv):
    """The same convolution without its activation: the target reconstruction fits."""
    twin = type(conv).from_config(dict(conv.get_config(), activation=None, name="twin"))
    twin.build(conv.input.shape)
    twin.set_weights(conv.get_weights())
    return twin


def channels_last(x, data_format):
    return x if data_format == "channels_last" else np.moveaxis(x, 1, -1)


def depthwise_outputs(layer, x):
    """`(positions, C r)` outputs of `layer`'s depthwise half on channels_last `x`, by a numpy loop."""
    out = reference.depthwise(x, numpy(layer.depthwise_kernel), layer.strides, layer.padding, layer.dilation_rate)
    return out.reshape(-1, out.shape[-1])


def lstsq_pointwise(layer, x, target):
    """Pointwise kernel and bias minimizing ||target - [dw(x), 1] theta|| (numpy lstsq), and its error."""
    dw = depthwise_outputs(layer, x)
    a = np.concatenate([dw, np.ones((len(dw), 1))], axis=1) if layer.use_bias else dw
    theta = np.linalg.lstsq(a, target, rcond=None)[0]
    error = np.linalg.norm(a @ theta - target) / np.linalg.norm(target)
    return theta[: dw.shape[1]], (theta[-1] if layer.use_bias else None), error


# The first case runs on every backend; the others once (slow), to keep `make test` short.
SINGLE_CASES = [
    (lambda: keras.layers.Conv2D(6, 3, padding="same", activation="relu"), (6, 6, 3), 1),
    pytest.param(
        lambda: keras.layers.Conv2D(5, (3, 2), strides=2, padding="valid", use_bias=False), (7, 6, 4), 2,
        marks=pytest.mark.slow,
    ),
    pytest.param(
        lambda: keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same", data_format="channels_first"), (3, 7, 7), 1,
        marks=pytest.mark.slow,
    ),
    pytest.param(lambda: keras.layers.Conv1D(6, 3, padding="causal", activation="tanh"), (10, 4), 2,
                 marks=pytest.mark.slow),
]  # fmt: skip


@pytest.mark.parametrize("make_layer, input_shape, rank", SINGLE_CASES)
def test_pointwise_and_bias_are_the_numpy_least_squares_solution(make_layer, input_shape, rank, rng):
    conv = make_layer()
    if conv.data_format == "channels_first" and BACKEND == "tensorflow":
        pytest.skip("TensorFlow's CPU convolutions refuse channels_first")
    model = single_conv(conv, input_shape, rng)
    x = rng.normal(size=(10, *input_shape)).astype("float32")
    new_model, report = convert(
        model, rank=rank, calibration=x, reconstruct=True, iterations=0, relu_rounds=0, ridge=0.0
    )
    layer = new_model.layers[0]
    x_last = channels_last(x, conv.data_format).astype(np.float64)
    target = channels_last(numpy(linear_twin(conv)(x)), conv.data_format)
    pointwise, bias, error = lstsq_pointwise(layer, x_last, target.reshape(-1, conv.filters))
    # float32 patches and targets, float64 normal equations: agreement to ~1e-4 relative.
    got = numpy(layer.pointwise_kernel).reshape(pointwise.shape)
    assert np.linalg.norm(got - pointwise) <= 1e-3 * np.linalg.norm(pointwise)
    if conv.use_bias:
        np.testing.assert_allclose(numpy(layer.bias), bias, rtol=1e-3, atol=1e-4 * np.abs(bias).max())
    row = report.layers[0]
    assert row.reconstruction_error_after == pytest.approx(error, rel=1e-3)
    # Before: the SVD factors (tested against numpy's SVD in test_convert) on the same data.
    d, p = factorize(numpy(conv.kernel), rank)
    svd_kernel = np.einsum("...cm,cmf->...cf", d, p.reshape(d.shape[-2], rank, -1))
    twin = linear_twin(conv)
    twin.set_weights([svd_kernel.astype("float32"), *conv.get_weights()[1:]])
    svd_out = channels_last(numpy(twin(x)), conv.data_format)
    expected_before = np.linalg.norm(svd_out - target) / np.linalg.norm(target)
    assert row.reconstruction_error_before == pytest.approx(expected_before, rel=1e-3)
    assert row.reconstruction_error_after <= row.reconstruction_error_before


def two_layer_model(rng):
    inputs = keras.Input((7, 7, 3))
    x = keras.layers.Conv2D(5, 3, padding="same", name="first")(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="second")(x)
    model = randomize(keras.Model(inputs, x), rng)
    variance = model.get_layer("norm").moving_variance
    variance.assign(np.abs(numpy(variance)).astype("float32") + 0.5)
    return model


def test_each_layer_is_fitted_on_the_converted_networks_inputs(rng):
    model = two_layer_model(rng)
    x = rng.normal(size=(12, 7, 7, 3)).astype("float32")
    new_model, report = convert(model, rank=1, calibration=x, reconstruct=True, iterations=0, relu_rounds=0, ridge=0.0)

    def head(network):  # the second layer's inputs in `network`, by its own layers
        normalized = network.get_layer("norm")(network.get_layer("first")(x), training=False)
        return numpy(keras.ops.relu(normalized))

    second = model.get_layer("second")
    target = numpy(linear_twin(second)(head(model).astype("float32"))).reshape(-1, 4)
    pointwise, bias, error = lstsq_pointwise(new_model.get_layer("second"), head(new_model), target)
    got = numpy(new_model.get_layer("second").pointwise_kernel).reshape(pointwise.shape)
    assert np.linalg.norm(got - pointwise) <= 1e-3 * np.linalg.norm(pointwise)
    assert report.layers[1].reconstruction_error_after == pytest.approx(error, rel=1e-3)


@pytest.mark.slow
def test_alternating_steps_never_increase_the_error_and_beat_the_svd(rng):
    model = two_layer_model(rng)
    x = rng.normal(size=(16, 7, 7, 3)).astype("float32")
    held_out = rng.normal(size=(16, 7, 7, 3)).astype("float32")
    _, pointwise_only = convert(model, rank=1, calibration=x, reconstruct=True, iterations=0, relu_rounds=0)
    svd_model, _ = convert(model, rank=1, calibration=None)
    new_model, report = convert(model, rank=1, calibration=x, reconstruct=True, iterations=3, relu_rounds=0)
    for row, pointwise_row in zip(report.layers, pointwise_only.layers):
        steps = row.reconstruction_steps
        assert len(steps) == 7  # 3 x (pointwise, depthwise) + the last pointwise solve
        assert all(b <= a * (1 + 1e-9) for a, b in zip(steps, steps[1:]))
        assert row.reconstruction_error_after < row.reconstruction_error_before
    assert report.layers[0].reconstruction_error_after <= pointwise_only.layers[0].reconstruction_error_after
    # The whole network is closer to the original on data it was not fitted on.
    before = numpy(model(held_out))
    assert relative_error(before, new_model(held_out)) < relative_error(before, svd_model(held_out))
    assert report.reconstruction.startswith("alternating least squares on the pre-activation outputs, 3 iteration")
    on_calibration = relative_error(model(x), new_model(x))
    assert report.network_error_after == pytest.approx(on_calibration, rel=1e-4)
    assert report.network_error_before == pytest.approx(relative_error(model(x), svd_model(x)), rel=1e-4)


@pytest.mark.slow
def test_branches_sharing_nesting_keep_working_and_full_rank_stays_exact(rng):
    model = branchy_model(rng)
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    held_out = rng.normal(size=(8, 8, 8, 3)).astype("float32")
    before = numpy(model(held_out))
    exact, _ = convert(model, calibration=x, reconstruct=True, iterations=1)
    assert relative_error(before, exact(held_out)) < 1e-3
    svd_model, _ = convert(model, rank=1, calibration=None)
    fitted, report = convert(model, rank=1, calibration=x, reconstruct=True, iterations=1, calibration_batch_size=8)
    assert [row.name for row in report.layers][2:4] == ["inner_functional/inner_conv", "inner_sequential/seq_conv"]
    assert all(row.reconstruction_error_after <= row.reconstruction_error_before for row in report.layers)
    assert relative_error(before, fitted(held_out)) < relative_error(before, svd_model(held_out))


def constant_branch_model(rng):
    """conv_a sees spatially constant images (all its taps alike), conv_b sees noise."""
    inputs = keras.Input((6, 6, 4))
    flat = keras.layers.GlobalAveragePooling2D(keepdims=True)(inputs)
    flat = keras.layers.UpSampling2D(6)(flat)
    a = keras.layers.Conv2D(8, 3, name="conv_a")(flat)
    b = keras.layers.Conv2D(8, 3, name="conv_b")(inputs)
    return randomize(keras.Model(inputs, keras.layers.Concatenate()([a, b]), name="two_branches"), rng)


@pytest.mark.slow
def test_budget_on_data_spends_the_rank_where_the_output_needs_it(rng):
    model = constant_branch_model(rng)
    x = rng.normal(size=(16, 6, 6, 4)).astype("float32")
    _, by_kernel = convert(model, budget=0.6, calibration=None)
    _, by_data = convert(model, budget=0.6, calibration=x, reconstruct=True)
    ranks = {row.name: row.rank for row in by_data.layers}
    kernel_ranks = {row.name: row.rank for row in by_kernel.layers}
    # On constant images a 3x3 filter acts through the sum of its taps only: rank 1 is exact there.
    assert ranks["conv_a"] == 1 < kernel_ranks["conv_a"]
    assert ranks["conv_b"] > kernel_ranks["conv_b"]
    assert by_data.layers[0].reconstruction_error_after < 1e-3
    assert by_data.params_after <= 0.6 * by_data.params_before
    assert by_data.rule == "budget=0.6 of params, ranks by output error on the calibration data"


def relu_round_model(rng):
    # The second layer's rank 2 is its full rank ((2, 1) kernel), so its pointwise solve is
    # the whole least squares: one ReLU round is numpy's lstsq on the ReLU targets.
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="first")(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(8, (2, 1), padding="same", activation="relu", name="second")(x)
    return randomize(keras.Model(inputs, x), rng)


def test_a_relu_round_is_least_squares_on_what_passes_the_relu(rng):
    model = relu_round_model(rng)
    x = rng.normal(size=(12, 6, 6, 3)).astype("float32")
    new_model, report = convert(model, rank=2, calibration=x, reconstruct=True, iterations=0, relu_rounds=1, ridge=0.0)
    first, second = report.layers
    assert len(first.reconstruction_relu_errors) == 2  # a ReLU layer of its own counts too

    def head(network):  # the second layer's inputs in `network`, by its own layers
        return numpy(network.get_layer("relu")(network.get_layer("first")(x)))

    def after_relu(prediction):
        return np.linalg.norm(np.maximum(prediction, 0) - np.maximum(y, 0)) / np.linalg.norm(np.maximum(y, 0))

    layer = new_model.get_layer("second")
    y = numpy(linear_twin(model.get_layer("second"))(head(model).astype("float32"))).reshape(-1, 8)
    dw = depthwise_outputs(layer, head(new_model))
    a = np.concatenate([dw, np.ones((len(dw), 1))], axis=1)
    fitted = a @ np.linalg.lstsq(a, y, rcond=None)[0]  # the pre-activation fit
    z = np.where(y > 0, y, np.minimum(fitted, 0))  # the nearest targets with the original's ReLU output
    theta = np.linalg.lstsq(a, z, rcond=None)[0]
    expected = [after_relu(fitted), after_relu(a @ theta)]
    assert expected[1] < expected[0]  # the round pays, so its weights are the ones kept
    assert second.reconstruction_relu_errors == pytest.approx(expected, rel=1e-3)
    got = numpy(layer.pointwise_kernel).reshape(-1, 8)
    assert np.linalg.norm(got - theta[:-1]) <= 1e-3 * np.linalg.norm(theta[:-1])
    np.testing.assert_allclose(numpy(layer.bias), theta[-1], rtol=1e-3, atol=1e-4 * np.abs(theta[-1]).max())
    assert "then 1 round(s) through the ReLU on the 2 layer(s) whose output goes through one" in report.reconstruction


def batch_norm_relu_model(rng):
    """A rank-2 3x3 conv and a full-rank (2, 1) conv -> BatchNorm (gammas > 0, < 0, 0) -> ReLU."""
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="first")(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(4, (2, 1), padding="same", name="second")(x)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.ReLU(name="norm_relu")(x)
    model = randomize(keras.Model(inputs, x), rng)
    norm = model.get_layer("norm")
    norm.gamma.assign(np.array([1.5, -0.7, 0.0, 0.9], "float32"))
    norm.moving_variance.assign(np.abs(numpy(norm.moving_variance)).astype("float32") + 0.5)
    return model


def test_a_relu_round_through_a_batch_norm_keeps_the_original_relu_off_where_it_is(rng):
    model = batch_norm_relu_model(rng)
    x = rng.normal(size=(12, 6, 6, 3)).astype("float32")
    new_model, report = convert(model, rank=2, calibration=x, reconstruct=True, iterations=0, relu_rounds=1, ridge=0.0)
    norm = model.get_layer("norm")

    def head(network):
        return numpy(network.get_layer("relu")(network.get_layer("first")(x)))

    def bn(y):  # Keras' own BatchNormalization in inference, on (positions, 4)
        return numpy(norm(y.reshape(-1, 1, 1, 4).astype("float32"), training=False)).reshape(-1, 4)

    def after_relu(prediction):
        expected = np.maximum(bn(y), 0)
        return np.linalg.norm(np.maximum(bn(prediction), 0) - expected) / np.linalg.norm(expected)

    layer = new_model.get_layer("second")
    y = numpy(model.get_layer("second")(head(model).astype("float32"))).reshape(-1, 4)
    dw = depthwise_outputs(layer, head(new_model))
    a = np.concatenate([dw, np.ones((len(dw), 1))], axis=1)
    fitted = a @ np.linalg.lstsq(a, y, rcond=None)[0]
    # BatchNorm in inference is affine per channel: shift = bn(0), scale = bn(1) - bn(0).
    shift = bn(np.zeros((1, 4)))[0]
    scale = bn(np.ones((1, 4)))[0] - shift
    assert scale[1] < 0 and scale[2] == 0
    off = np.where(scale != 0, (np.minimum(scale * fitted + shift, 0) - shift) / np.where(scale, scale, 1), fitted)
    z = np.where(scale * y + shift > 0, y, off)
    theta = np.linalg.lstsq(a, z, rcond=None)[0]
    expected = [after_relu(fitted), after_relu(a @ theta)]
    assert expected[1] < expected[0]
    assert report.layers[1].reconstruction_relu_errors == pytest.approx(expected, rel=1e-3)
    got = numpy(layer.pointwise_kernel).reshape(-1, 4)
    assert np.linalg.norm(got - theta[:-1]) <= 1e-3 * np.linalg.norm(theta[:-1])


def test_relu_rounds_refit_the_same_without_the_kept_inputs(monkeypatch, rng):
    from sepconv.convert import _reconstruct

    model = batch_norm_relu_model(rng)
    x = rng.normal(size=(12, 6, 6, 3)).astype("float32")
    kept, kept_report = convert(model, rank=1, calibration=x, reconstruct=True, iterations=1)
    monkeypatch.setattr(_reconstruct, "KEPT_BYTES", 0)  # every pass runs both models again
    rerun, rerun_report = convert(model, rank=1, calibration=x, reconstruct=True, iterations=1)
    for a, b in zip(kept.get_weights(), rerun.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert [row.reconstruction_passes for row in kept_report.layers] == [1] * len(kept_report.layers)
    # the first pass, then one per round and one to measure the last: 2 rounds by default
    rounds = [len(row.reconstruction_relu_errors) for row in rerun_report.layers]
    assert 3 in rounds and [row.reconstruction_passes for row in rerun_report.layers] == [1 + r for r in rounds]


def relu_input_of(model, name):
    from sepconv.convert._relu import relu_inputs

    layer = model.get_layer(name)
    return relu_inputs(model, [layer])[id(layer)]


def test_which_layers_feed_a_relu_is_read_from_the_models_own_graph(tmp_path, rng):
    inputs = keras.Input((6, 6, 3))
    own = keras.layers.Conv2D(4, 3, activation="relu", name="own")(inputs)
    capped = keras.layers.ReLU(max_value=6.0, name="capped")(keras.layers.Conv2D(4, 3, name="to_relu6")(own))
    act = keras.layers.Activation("relu")(keras.layers.Conv2D(4, 3, padding="same", name="to_activation")(capped))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="to_norm")(act)
    norm = keras.layers.BatchNormalization(center=False, name="norm")(conv)
    out = keras.layers.ReLU(name="relu")(norm)
    cross = keras.layers.BatchNormalization(axis=1, name="wrong_axis")(keras.layers.Conv2D(4, 1, name="to_axis1")(out))
    model = randomize(keras.Model(inputs, [keras.layers.ReLU()(cross), out]), rng)
    variance = model.get_layer("norm").moving_variance
    variance.assign(np.abs(numpy(variance)).astype("float32") + 0.5)
    assert [x.tolist() for x in relu_input_of(model, "own")] == [[1.0] * 4, [0.0] * 4]
    assert relu_input_of(model, "to_relu6") is None  # a capped ReLU is not a plain one
    assert relu_input_of(model, "to_activation") is not None
    assert relu_input_of(model, "to_axis1") is None  # the BatchNorm normalizes another axis
    scale, shift = relu_input_of(model, "to_norm")
    layer = model.get_layer("norm")
    zero = numpy(layer(np.zeros((1, 1, 1, 4), "float32"), training=False)).ravel()
    one = numpy(layer(np.ones((1, 1, 1, 4), "float32"), training=False)).ravel()
    assert np.all(np.isfinite(scale)) and np.all(scale != 0)
    np.testing.assert_allclose(shift, zero, atol=1e-6)
    np.testing.assert_allclose(scale, one - zero, rtol=1e-5)
    # The same layers in a model that stops at the convolution: no ReLU there.
    truncated = keras.Model(inputs, conv)
    assert relu_input_of(truncated, "to_norm") is None
    # A Sequential loaded from a file (rebuilt layer by layer) is read from its final graph.
    sequential = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                                   keras.layers.BatchNormalization(), keras.layers.ReLU()])  # fmt: skip
    sequential.save(str(tmp_path / "s.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "s.keras"))
    assert relu_input_of(loaded, "conv") is not None


def test_reconstruction_errors_are_pinned(rng):
    model = two_layer_model(rng)
    x = rng.normal(size=(12, 7, 7, 3)).astype("float32")
    cases = [
        (dict(calibration="random"), ValueError,
         "reconstruct needs calibration data: an array of model inputs (no labels). Received: calibration='random'"),
        (dict(calibration=None), ValueError,
         "reconstruct needs calibration data: an array of model inputs (no labels). Received: calibration=None"),
        (dict(calibration=x[..., :2]), ValueError,
         "calibration samples must have the model's input shape (7, 7, 3). Received: calibration shape=(12, 7, 7, 2)"),
        (dict(calibration=x[:, :5]), ValueError,
         "calibration samples must have the model's input shape (7, 7, 3). Received: calibration shape=(12, 5, 7, 3)"),
        (dict(calibration=x[:0]), ValueError,
         "calibration must hold the same positive number of samples in every input. Received: calibration sizes=[0]"),
        (dict(calibration=x, iterations=-1), ValueError, "iterations must be non-negative. Received: iterations=-1"),
        (dict(calibration=x, relu_rounds=-1), ValueError,
         "relu_rounds must be non-negative. Received: relu_rounds=-1"),
        (dict(calibration=x, ridge=-1.0), ValueError, "ridge must be a number in [0, inf). Received: ridge=-1.0"),
        (dict(calibration=x, reconstruct="yes"), TypeError,
         "reconstruct must be True or False. Received: reconstruct='yes'"),
    ]  # fmt: skip
    for kwargs, error, message in cases:
        kwargs = {"rank": 1, "reconstruct": True, **kwargs}
        with pytest.raises(error, match=f"^{re.escape(message)}$"):
            convert(model, **kwargs)
    # One output position per sample: 4 samples cannot determine 8 x 1 + 1 unknowns per filter.
    tiny = single_conv(keras.layers.Conv2D(4, 3, name="tiny_conv"), (3, 3, 8), rng)
    too_small = (
        "calibration is too small to reconstruct layer 'tiny_conv': 4 samples give 4 output positions, fewer "
        "than its 9 unknowns per filter (input channels x rank + bias). Received: calibration size=4"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(too_small)}$"):
        convert(tiny, rank=1, calibration=rng.normal(size=(4, 3, 3, 8)).astype("float32"), reconstruct=True)


def numpy_distillation(labels, student, teacher, temperature, label_weight, weight=1.0):
    """Hinton et al. 2015 on probabilities, in float64: T^2 KL(p_t^T || p_s^T) and cross-entropy.

    With `weight` < 1 the cross-entropy is against `weight` of each row's label and the rest of the previous row's.
    """

    def soften(p):
        z = np.log(p) / temperature
        z = np.exp(z - z.max(-1, keepdims=True))
        return z / z.sum(-1, keepdims=True)

    pt, ps = soften(teacher), soften(student)
    kl = np.sum(pt * (np.log(pt) - np.log(ps)), -1)
    rows = np.arange(len(labels))
    hard = -weight * np.log(student[rows, labels]) - (1 - weight) * np.log(student[rows, np.roll(labels, 1)])
    return (1 - label_weight) * temperature**2 * kl + label_weight * hard


@pytest.mark.parametrize("temperature, label_weight", [(1.0, 0.0), (4.0, 0.0), (2.0, 0.3), (3.0, 1.0)])
def test_distillation_loss_matches_numpy(temperature, label_weight, rng):
    student = rng.dirichlet(np.ones(5), size=6)
    teacher = rng.dirichlet(np.ones(5), size=6)
    labels = rng.integers(0, 5, size=6)
    loss = distillation_loss(5, temperature, label_weight, from_logits=False)
    got = numpy(loss(labels, np.concatenate([student, teacher], -1).astype("float32")))
    expected = numpy_distillation(labels, student, teacher, temperature, label_weight)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    logits = np.log(np.concatenate([student, teacher], -1))
    from_logits = distillation_loss(5, temperature, label_weight, from_logits=True)
    np.testing.assert_allclose(numpy(from_logits(labels, logits.astype("float32"))), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_distillation_loss_with_a_mixing_column_matches_numpy(weight, rng):
    student, teacher = rng.dirichlet(np.ones(4), size=5), rng.dirichlet(np.ones(4), size=5)
    labels = rng.integers(0, 4, size=5)
    outputs = np.concatenate([student, teacher, np.full((5, 1), weight)], -1).astype("float32")
    got = numpy(distillation_loss(4, 2.0, 0.4, from_logits=False)(labels, outputs))
    expected = numpy_distillation(labels, student, teacher, 2.0, 0.4, weight)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_distilled_with_mixup_feeds_both_networks_the_mixed_batch(rng):
    # reference: each network called by Keras on the batch mixed in numpy with the weight it reports
    teacher = two_conv_teacher(rng)
    student, _ = convert(teacher, rank=1, calibration=None)
    images = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    combined = _Distilled(student, teacher, mixup=0.5)
    weights = []
    for _ in range(2):
        out = numpy(combined(images, training=True))
        assert out.shape == (6, 7) and np.ptp(out[:, 6]) == 0 and 0 < out[0, 6] < 1
        weight = float(out[0, 6])
        mixed = weight * images + (1 - weight) * np.roll(images, 1, axis=0)
        np.testing.assert_allclose(out[:, :3], numpy(student(mixed)), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out[:, 3:6], numpy(teacher(mixed)), rtol=1e-4, atol=1e-6)
        weights.append(weight)
    assert weights[0] != weights[1]  # a new weight for each batch
    plain = numpy(combined(images, training=False))
    np.testing.assert_allclose(plain, np.concatenate([numpy(student(images)), numpy(teacher(images))], -1),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


@pytest.mark.slow
def test_finetune_distills_from_the_teacher_and_leaves_it_untouched(rng):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    teacher = randomize(keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)), rng)
    teacher.get_layer("norm").moving_variance.assign(np.ones(6, "float32"))
    teacher.get_layer("norm").trainable = False  # a frozen layer stays frozen
    student, _ = convert(teacher, rank=1, calibration=None)
    images = rng.integers(0, 256, size=(32, 8, 8, 3), dtype=np.uint8)
    train = Batches(images, rng.integers(0, 3, size=32), batch_size=16, seed=0)
    student.get_layer("norm").trainable = True
    weights = [numpy(w) for w in teacher.weights]
    statistics = numpy(student.get_layer("norm").moving_mean)
    history = finetune(student, train, epochs=3, learning_rate=1e-2, verbose=0, teacher=teacher, temperature=2.0,
                       mixup=0.4)  # fmt: skip
    np.testing.assert_array_equal(numpy(student.get_layer("norm").moving_mean), statistics)  # frozen BatchNorm
    assert student.get_layer("norm").trainable
    assert history["loss"][-1] < history["loss"][0] and "accuracy" in history
    for before, after in zip(weights, teacher.weights):
        np.testing.assert_array_equal(before, numpy(after))
    assert teacher.trainable and not teacher.get_layer("norm").trainable
    with pytest.raises(ValueError, match=r"^label_weight must be a number in \[0, 1\]\. Received: label_weight=1\.5$"):
        finetune(student, train, teacher=teacher, label_weight=1.5)
    with pytest.raises(ValueError, match=r"^temperature must be a number in \(0, inf\)\. Received: temperature=0$"):
        finetune(student, train, teacher=teacher, temperature=0)
    with pytest.raises(ValueError, match=r"^mixup must be a number in \[0, inf\)\. Received: mixup=-1$"):
        finetune(student, train, teacher=teacher, mixup=-1)
    with pytest.raises(ValueError, match=r"^mixup needs a teacher\. Received: mixup=0\.4, teacher=None$"):
        finetune(student, train, mixup=0.4)


def numpy_feature_loss(student, teacher):
    """Mean over layers of ||s - t||^2 / ||t||^2 over the whole batch, in float64."""
    return np.mean([np.sum((s - t) ** 2) / np.sum(t**2) for s, t in zip(student, teacher)])


def test_feature_loss_matches_numpy(rng):
    student = [rng.normal(size=(4, 3, 3, 2)), rng.normal(size=(4, 5))]
    teacher = [rng.normal(size=(4, 3, 3, 2)), rng.normal(size=(4, 5))]
    got = numpy(feature_loss([x.astype("float32") for x in student], [x.astype("float32") for x in teacher]))
    np.testing.assert_allclose(got, numpy_feature_loss(student, teacher), rtol=1e-5)


def two_conv_teacher(rng):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return randomize(keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x)), rng)


def test_distillation_with_features_adds_the_layers_relative_error(rng):
    # reference: each model's layer outputs from Keras' own sub-models, the loss in numpy
    teacher = two_conv_teacher(rng)
    student, _ = convert(teacher, rank=1, calibration=None)
    images = rng.normal(size=(8, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, size=8)
    combined = _Distilled(student, teacher, feature_weight=0.5)
    combined.compile(loss=distillation_loss(3, 2.0, 0.3, from_logits=False))
    got = combined.evaluate(images, labels, batch_size=8, verbose=0)

    def outputs(model):
        names = ["conv1", "conv2", "head"]
        return [numpy(keras.Model(model.inputs, model.get_layer(n).output)(images)) for n in names]

    s, t = outputs(student), outputs(teacher)
    expected = numpy_distillation(labels, s[2], t[2], 2.0, 0.3).mean() + 0.5 * numpy_feature_loss(s[:2], t[:2])
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.slow
def test_finetune_with_features_brings_the_layers_closer_to_the_teacher(rng):
    # against the same fine-tune on labels only, from the same weights
    teacher = two_conv_teacher(rng)
    student, _ = convert(teacher, rank=1, calibration=None)
    labels_only, _ = convert(teacher, rank=1, calibration=None)
    images = rng.integers(0, 256, size=(64, 8, 8, 3), dtype=np.uint8)
    train = Batches(images, rng.integers(0, 3, size=64), batch_size=16, seed=0)
    x = train[0][0]

    def error(model):
        s, t = (keras.Model(m.inputs, m.get_layer("conv2").output)(x) for m in (model, teacher))
        return relative_error(t, s)

    before = error(student)
    for model, weight in [(student, 1.0), (labels_only, 0.0)]:
        finetune(model, train, epochs=4, learning_rate=1e-2, verbose=0, teacher=teacher, label_weight=1.0,
                 feature_weight=weight)  # fmt: skip
    assert error(student) < 0.9 * min(before, error(labels_only)), (before, error(student), error(labels_only))


def test_feature_distillation_errors(rng):
    teacher = two_conv_teacher(rng)
    student, _ = convert(teacher, rank=1, calibration=None)
    train = Batches(rng.integers(0, 256, size=(16, 8, 8, 3), dtype=np.uint8), rng.integers(0, 3, size=16),
                    batch_size=16)  # fmt: skip
    with pytest.raises(ValueError, match=r"^feature_weight needs a teacher\. Received: feature_weight=1\.0, teacher"):
        finetune(student, train, feature_weight=1.0)
    with pytest.raises(ValueError, match=r"^feature_weight must be a number in \[0, inf\)\. Received: .*=-1\.0$"):
        finetune(student, train, teacher=teacher, feature_weight=-1.0)
    nested = keras.Sequential([keras.Input((8, 8, 3)), student])
    with pytest.raises(ValueError, match=r"^feature distillation needs converted layers at the top level .*Received: "):
        finetune(nested, train, teacher=teacher, feature_weight=1.0)


def reference_step(t, steps, learning_rate, schedule, warmup_steps):
    """The step size of update t: linear from lr/10 to lr over the warmup, then constant or a cosine to 0."""
    if t < warmup_steps:
        return learning_rate / 10 + (learning_rate - learning_rate / 10) * t / warmup_steps
    if schedule == "constant":
        return learning_rate
    return learning_rate * 0.5 * (1 + math.cos(math.pi * (t - warmup_steps) / (steps - warmup_steps)))


@pytest.mark.parametrize("schedule, warmup", [("cosine", 0.0), ("cosine", 0.5), ("constant", 0.25)])
def test_finetune_schedule_matches_adam_stepped_by_hand(schedule, warmup, rng):
    # reference: Keras' own Adam on the same batches, its step set by hand before each of
    # the T = epochs * batches updates (`reference_step`)
    model = randomize(keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                                        keras.layers.Dense(3, activation="softmax")]), rng)  # fmt: skip
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    train = Batches(rng.integers(0, 256, size=(64, 4, 4, 3), dtype=np.uint8), rng.integers(0, 3, size=64),
                    batch_size=16, shuffle=False)  # fmt: skip
    finetune(model, train, epochs=2, learning_rate=0.05, schedule=schedule, warmup=warmup, verbose=0)
    twin.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    steps = 2 * len(train)
    for t in range(steps):
        twin.optimizer.learning_rate.assign(reference_step(t, steps, 0.05, schedule, round(warmup * steps)))
        twin.train_on_batch(*train[t % len(train)])
    for got, expected in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def numpy_adam_with_global_clip(weights, batches, learning_rate, clip_norm):
    """Keras' Adam (epsilon 1e-7 outside the square root) on a softmax regression, each update's
    gradients scaled together to a global norm of at most `clip_norm`. Returns the weights and
    each update's norm before clipping."""
    kernel, bias = (w.astype(np.float64) for w in weights)
    moments = [np.zeros_like(kernel), np.zeros_like(bias)], [np.zeros_like(kernel), np.zeros_like(bias)]
    norms = []
    for t, (x, y) in enumerate(batches, start=1):
        x = x.reshape(len(x), -1).astype(np.float64)
        logits = x @ kernel + bias
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        delta = (p - np.eye(kernel.shape[1])[y]) / len(x)  # mean cross-entropy through the softmax
        grads = [x.T @ delta, delta.sum(axis=0)]
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
        norms.append(norm)
        grads = [g * min(1.0, clip_norm / norm) for g in grads]
        alpha = learning_rate * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        for w, g, m, v in zip((kernel, bias), grads, *moments):
            m += (g - m) * 0.1
            v += (g * g - v) * 0.001
            w -= alpha * m / (np.sqrt(v) + 1e-7)
    return [kernel, bias], norms


def test_finetune_clip_norm_matches_adam_on_clipped_gradients_by_hand(rng):
    # reference: numpy softmax regression and Adam, the global clip applied by hand
    def regression():
        return keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                                 keras.layers.Dense(3, activation="softmax")])  # fmt: skip

    model = randomize(regression(), rng)
    unclipped = regression()
    unclipped.set_weights(model.get_weights())
    train = Batches(rng.integers(0, 256, size=(64, 4, 4, 3), dtype=np.uint8), rng.integers(0, 3, size=64),
                    batch_size=16, shuffle=False)  # fmt: skip
    batches = [train[i % len(train)] for i in range(2 * len(train))]
    expected, norms = numpy_adam_with_global_clip(model.get_weights(), batches, 0.05, clip_norm=1.5)
    assert min(norms) < 1.5 < max(norms), norms  # some updates clipped, some not
    finetune(model, train, epochs=2, learning_rate=0.05, clip_norm=1.5, verbose=0)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    finetune(unclipped, train, epochs=2, learning_rate=0.05, verbose=0)
    assert not np.allclose(unclipped.get_weights()[0], expected[0], rtol=1e-4, atol=1e-5)


def test_finetune_schedule_errors(rng):
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    train = Batches(rng.integers(0, 256, size=(32, 4, 4, 3), dtype=np.uint8), rng.integers(0, 3, size=32),
                    batch_size=16, shuffle=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"^schedule must be one of 'constant', 'cosine'\..*schedule='cos'$"):
        finetune(model, train, schedule="cos")
    with pytest.raises(ValueError, match=r"^schedule='cosine' needs `train` with a length .* Received: train of type"):
        finetune(model, iter([train[0]]), schedule="cosine")
    with pytest.raises(ValueError, match=r"^warmup=0\.1 needs `train` with a length .* Received: train of type"):
        finetune(model, iter([train[0]]), warmup=0.1)
    with pytest.raises(ValueError, match=r"^warmup must be a number in \[0, 1\)\. Received: warmup=1\.0$"):
        finetune(model, train, warmup=1.0)
    with pytest.raises(ValueError, match=r"^clip_norm must be a number in \(0, inf\)\. Received: clip_norm=0\.0$"):
        finetune(model, train, clip_norm=0.0)


def separable_chain(rank, rng, **options):
    """Input -> two separable layers with `options` -> pooling -> softmax head, random weights."""
    from sepconv.layers import DepthwiseSeparableConv1D, DepthwiseSeparableConv2D

    layer = {1: DepthwiseSeparableConv1D, 2: DepthwiseSeparableConv2D}[rank]
    inputs = keras.Input((8,) * rank + (3,))
    x = layer(6, 3, padding="same", activation="relu", name="sep1", **options)(inputs)
    x = layer(5, 3, activation="relu", name="sep2", **options)(x)
    x = {1: keras.layers.GlobalAveragePooling1D, 2: keras.layers.GlobalAveragePooling2D}[rank]()(x)
    return randomize(keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x)), rng)


@pytest.mark.parametrize(
    "rank, options",
    [(2, {}), (2, {"depthwise_use_bias": True, "depthwise_activation": "relu"}), (2, {"depth_multiplier": 2}),
     (1, {})],
)  # fmt: skip
def test_reparameterized_layers_start_as_the_identity_and_fold_exactly(rank, options, rng):
    # reference: the normed network's own forward pass (Keras' BatchNormalization) against the folded plain one
    from sepconv.convert._reparameterize import fold, with_batch_norm

    model = separable_chain(rank, rng, **options)
    images = rng.normal(size=(16,) + (8,) * rank + (3,)).astype("float32")
    normed, layers = with_batch_norm(model, images)
    assert sorted(layer.name for layer in layers) == ["sep1", "sep2"]
    assert normed.get_layer("head") is model.get_layer("head")  # shared, not copied
    plain = numpy(model(images))
    np.testing.assert_allclose(numpy(normed(images, training=False)), plain, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(numpy(normed(images, training=True)), plain, rtol=1e-3, atol=1e-5)  # its own batch
    for copy in layers:
        for norm in (copy.depthwise_norm, copy.norm):
            for variable in (norm.gamma, norm.beta, norm.moving_mean):
                variable.assign(numpy(variable) + rng.normal(scale=0.3, size=variable.shape).astype("float32"))
            norm.moving_variance.assign(numpy(norm.moving_variance) * rng.uniform(0.5, 2.0, norm.moving_variance.shape))
    expected, params = numpy(normed(images, training=False)), model.count_params()
    fold(layers)
    np.testing.assert_allclose(numpy(model(images)), expected, rtol=1e-4, atol=1e-6)
    assert model.count_params() == params and model.get_layer("sep1").normalization is None


@pytest.mark.parametrize("batch_size", [128, 100])
def test_reparameterized_batch_norms_start_on_each_channels_calmest_batch(batch_size, rng):
    # reference: Keras' DepthwiseConv2D and a numpy pointwise product, each batch's moments by numpy,
    # per channel those of the batch (of 128, 128 and 44 images, or 3 of 100) with the least variance
    from sepconv.convert._reparameterize import with_batch_norm

    model = separable_chain(2, rng)
    images = rng.normal(size=(300, 8, 8, 3)).astype("float32")
    images[:128] *= 5.0  # a first batch unlike the rest
    _, layers = with_batch_norm(model, images, batch_size)
    (copy,) = [copy for copy in layers if copy.name == "sep1"]
    layer = model.get_layer("sep1")
    depthwise = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)
    depthwise.build(images.shape)
    depthwise.set_weights([numpy(layer.depthwise_kernel)])
    middle = numpy(depthwise(images)).astype("float64")
    output = middle @ numpy(layer.pointwise_kernel)[0, 0] + numpy(layer.bias)
    for norm, x in ((copy.depthwise_norm, middle), (copy.norm, output)):
        batches = [x[start : start + batch_size] for start in range(0, len(x), batch_size)]
        means, variances = (np.array([getattr(b, f)(axis=(0, 1, 2)) for b in batches]) for f in ("mean", "var"))
        calmest = variances.argmin(axis=0)
        mean, variance = (a[calmest, np.arange(a.shape[1])] for a in (means, variances))
        assert np.all(variance < 0.5 * x.var(axis=(0, 1, 2)))  # the outlier batch does not set the start
        np.testing.assert_allclose(numpy(norm.moving_mean), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(numpy(norm.moving_variance), variance, rtol=1e-4)
        np.testing.assert_allclose(numpy(norm.gamma), np.sqrt(variance + norm.epsilon), rtol=1e-4)
        np.testing.assert_allclose(numpy(norm.beta), mean, rtol=1e-4, atol=1e-5)


def test_reparameterize_reads_the_first_batches_up_to_the_count(rng):
    from sepconv.convert._finetune import STATISTICS_IMAGES, _first_images

    images = rng.integers(0, 256, size=(64, 4, 4, 3), dtype=np.uint8)
    train = Batches(images, np.zeros(64, "int32"), batch_size=16, shuffle=False)
    assert STATISTICS_IMAGES == 1024
    images, batch_size = _first_images(train, count=40)
    np.testing.assert_array_equal(images, np.concatenate([train[i][0] for i in range(3)]))
    assert batch_size == 16
    assert len(_first_images(train)[0]) == 64  # fewer than the count: all of them
    assert len(_first_images([train[0], train[1]], count=20)[0]) == 32  # re-iterable


def test_reparameterize_needs_a_foldable_separable_layer(rng):
    from sepconv.convert._reparameterize import reparameterizable, with_batch_norm

    model = separable_chain(2, rng, use_bias=False)
    assert not reparameterizable(model.get_layer("sep1"))
    assert not reparameterizable(separable_chain(2, rng, depthwise_activation="relu").get_layer("sep1"))
    message = r"^reparameterize needs DepthwiseSeparableConv1D/2D layers at the top level .* Received: model=\w+$"
    with pytest.raises(ValueError, match=message):
        with_batch_norm(model, np.zeros((2, 8, 8, 3), "float32"))
    train = iter([(np.zeros((2, 8, 8, 3), "float32"), np.zeros(2, "int32"))])
    message = r"^reparameterize reads the first batches .* Received: train of type list_iterator$"
    with pytest.raises(ValueError, match=message):
        finetune(separable_chain(2, rng), train, reparameterize=True)


@pytest.mark.slow
def test_finetune_reparameterized_keeps_the_shape_and_trains_every_layer(rng):
    teacher = two_conv_teacher(rng)
    student, _ = convert(teacher, rank=1, calibration=None)
    images = rng.integers(0, 256, size=(64, 8, 8, 3), dtype=np.uint8)
    train = Batches(images, rng.integers(0, 3, size=64), batch_size=16, seed=0)
    before = {w.path: numpy(w) for w in student.weights}
    classes = [type(layer) for layer in student.layers]
    history = finetune(student, train, epochs=3, learning_rate=1e-2, verbose=0, teacher=teacher, reparameterize=True)
    assert history["loss"][-1] < history["loss"][0]
    assert [type(layer) for layer in student.layers] == classes
    assert sorted(before) == sorted(w.path for w in student.weights)
    assert all(not np.allclose(before[w.path], numpy(w)) for w in student.weights), "every weight trained or folded"
