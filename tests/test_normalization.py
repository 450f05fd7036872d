"""`sepconv.layers.BatchNormalization` and `kernels.batch_norm_training` against Keras and numpy."""

import keras
import numpy as np
import pytest

import sepconv
from autodiff import gradients
from sepconv import kernels

EPSILON = 1e-3


def _numpy_batch_norm(x, gamma, beta, axis):
    """Training-mode batch norm in float64: normalized x, mean, biased variance."""
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    x = x.astype(np.float64)
    mean = x.mean(axis=axes)
    variance = x.var(axis=axes)
    y = (x - mean.reshape(shape)) / np.sqrt(variance.reshape(shape) + EPSILON)
    return y * gamma.reshape(shape) + beta.reshape(shape), mean, variance


def _keras_composite(x, gamma, beta, axis):
    """Keras' own training-mode computation (what `keras.layers.BatchNormalization` runs)."""
    axes = [i for i in range(len(x.shape)) if i != axis % len(x.shape)]
    mean, variance = keras.ops.moments(x, axes)
    return keras.ops.batch_normalization(x, mean, variance, axis, offset=beta, scale=gamma, epsilon=EPSILON)


@pytest.mark.parametrize("shape, axis", [((4, 5, 6, 3), -1), ((4, 3, 5, 6), 1), ((6, 4), -1), ((3, 4, 5, 6, 2), -1)])
@pytest.mark.parametrize("relu", [False, True])
def test_fused_training_step_matches_numpy_and_keras_gradients(shape, axis, relu, rng):
    channels = shape[axis]
    x = (rng.standard_normal(shape) * 2 + 1).astype("float32")
    gamma = rng.uniform(0.5, 1.5, channels).astype("float32")
    beta = rng.standard_normal(channels).astype("float32")
    tensors = [keras.ops.convert_to_tensor(t) for t in (x, gamma, beta)]
    fused = kernels.batch_norm_training(*tensors, axis, EPSILON, relu=relu)
    if fused is None:  # no fused op for this rank or backend: the layer takes Keras' path
        pytest.skip(f"no fused batch norm for rank {len(shape)} on {keras.backend.backend()}")
    y, mean, variance = _numpy_batch_norm(x, gamma, beta, axis)
    expected = (np.maximum(y, 0) if relu else y), mean, variance
    for got, want in zip(fused, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-4, atol=1e-4)

    def keras_step(*t):
        y = _keras_composite(*t, axis)
        return keras.ops.relu(y) if relu else y

    g = rng.standard_normal(shape).astype("float32")
    ours = gradients(lambda *t: kernels.batch_norm_training(*t, axis, EPSILON, relu=relu)[0], [x, gamma, beta], g)
    theirs = gradients(keras_step, [x, gamma, beta], g)
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_fused_relu_step_without_scale_and_offset_matches_keras_gradients(rng):
    x = (rng.standard_normal((4, 5, 6, 3)) * 2 + 1).astype("float32")
    if kernels.batch_norm_training(keras.ops.convert_to_tensor(x), None, None, -1, EPSILON, relu=True) is None:
        pytest.skip(f"no fused batch norm on {keras.backend.backend()}")
    g = rng.standard_normal(x.shape).astype("float32")
    (ours,) = gradients(lambda t: kernels.batch_norm_training(t, None, None, -1, EPSILON, relu=True)[0], [x], g)
    (theirs,) = gradients(lambda t: keras.ops.relu(_keras_composite(t, None, None, -1)), [x], g)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("axis, shape", [(-1, (8, 6, 6, 5)), (1, (8, 5, 6, 6)), (-1, (8, 5))])
@pytest.mark.parametrize("center, scale", [(True, True), (False, False)])
@pytest.mark.parametrize("relu", [False, True])
def test_layer_is_a_drop_in_for_keras(axis, shape, center, scale, relu, rng):
    ours = sepconv.layers.BatchNormalization(axis=axis, center=center, scale=scale, momentum=0.9)
    theirs = keras.layers.BatchNormalization(axis=axis, center=center, scale=scale, momentum=0.9)
    ours.build(shape)
    theirs.build(shape)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in theirs.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    for _ in range(2):
        x = (rng.standard_normal(shape) * 3 - 1).astype("float32")
        for training in (True, False):
            expected = theirs(x, training=training)
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(ours(x, training=training, relu=relu)),
                keras.ops.convert_to_numpy(keras.ops.relu(expected) if relu else expected),
                rtol=1e-4,
                atol=1e-4,
            )
    for got, want in zip(ours.get_weights(), theirs.get_weights()):  # moving mean and variance too
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert ours.get_config() == {**theirs.get_config(), "name": ours.name}


def test_layer_trains_inside_a_model_and_round_trips(tmp_path, rng):
    inputs = keras.Input((6, 6, 3))
    x = sepconv.layers.DepthwiseSeparableConv2D(4, 3, padding="same", normalization="batch", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    model.fit(rng.standard_normal((8, 6, 6, 3)).astype("float32"), rng.integers(0, 2, 8), epochs=1, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    path = tmp_path / "bn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert any(isinstance(layer, sepconv.layers.BatchNormalization) for layer in loaded._flatten_layers())
    x = rng.standard_normal((2, 6, 6, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("relu", [False, True])
def test_layer_in_mixed_precision_matches_keras(relu, rng):
    """bfloat16 inputs, float32 statistics: what Keras' layer computes under mixed_bfloat16."""
    shape = (8, 6, 6, 5)
    ours = sepconv.layers.BatchNormalization(momentum=0.9, dtype="mixed_bfloat16")
    theirs = keras.layers.BatchNormalization(momentum=0.9, dtype="mixed_bfloat16")
    ours.build(shape)
    theirs.build(shape)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in theirs.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    x = keras.ops.cast(keras.ops.convert_to_tensor((rng.standard_normal(shape) * 3 - 1).astype("float32")), "bfloat16")
    for training in (True, False):
        got = ours(x, training=training, relu=relu)
        want = theirs(x, training=training)
        want = keras.ops.relu(want) if relu else want
        assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
        got, want = (keras.ops.convert_to_numpy(keras.ops.cast(t, "float32")) for t in (got, want))
        np.testing.assert_allclose(got, want, rtol=0.02, atol=0.02)  # a bfloat16 rounding or two
    for got, want in zip(ours.get_weights(), theirs.get_weights()):  # the float32 moving statistics
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
