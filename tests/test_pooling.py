"""`sepconv.kernels.max_pool` and the `MaxPooling*D` layers, against a numpy loop and Keras."""

import keras
import numpy as np
import pytest

import reference
import sepconv
from autodiff import gradients
from helpers import BACKEND, DATA_FORMATS, to_format
from sepconv import kernels

# (spatial, pool_size, strides, padding)
CASES = [
    ((8,), (2,), (2,), "valid"),
    ((9,), (3,), (2,), "same"),
    ((8, 8), (2, 2), (2, 2), "valid"),
    ((7, 9), (2, 2), (2, 2), "valid"),
    ((7, 9), (3, 3), (1, 1), "same"),  # symmetric padding: torch pads itself
    ((8, 8), (2, 2), (2, 2), "same"),
    ((9, 8), (2, 3), (2, 2), "same"),  # asymmetric padding: portable path
    ((5, 6, 4), (2, 2, 2), (2, 2, 2), "valid"),
    ((5, 6, 4), (3, 3, 3), (1, 2, 1), "same"),
]


def _distinct(rng, shape):
    """Values without ties, so the maximum (and its gradient) is unique."""
    return (rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape)).astype("float32")


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{len(case[0])}d-{case[0]}-p{case[1]}-s{case[2]}-{case[3]}")
@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_max_pool_matches_reference(case, data_format, rng):
    spatial, pool_size, strides, padding = case
    x = _distinct(rng, (2, *spatial, 3))
    expected = reference.max_pool(x, pool_size, strides, padding)
    y = kernels.max_pool(to_format(x, data_format), pool_size, strides, padding, data_format)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), to_format(expected, data_format))

    g = rng.standard_normal(expected.shape).astype("float32")
    (dx,) = gradients(
        lambda t: kernels.max_pool(t, pool_size, strides, padding, data_format),
        [to_format(x, data_format)],
        to_format(g, data_format),
    )
    expected_dx = reference.max_pool_gradient(x, g, pool_size, strides, padding)
    np.testing.assert_allclose(dx, to_format(expected_dx, data_format), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_layer_is_a_drop_in_for_keras(rank, rng, tmp_path):
    ours = getattr(sepconv.layers, f"MaxPooling{rank}D")(2, padding="same", name="pool")
    theirs = getattr(keras.layers, f"MaxPooling{rank}D")(2, padding="same")
    x = _distinct(rng, (2, *(5,) * rank, 4))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)))
    assert isinstance(ours, type(theirs))
    config = {k: v for k, v in ours.get_config().items() if k != "name"}
    assert config == {k: v for k, v in theirs.get_config().items() if k != "name"}

    model = keras.Sequential([keras.Input(x.shape[1:]), ours])
    path = tmp_path / "pool.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[0]) is type(ours)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))


@pytest.mark.skipif(BACKEND != "torch", reason="the layout path is PyTorch's")
def test_torch_output_is_contiguous_channels_last(rng):
    x = keras.ops.convert_to_tensor(_distinct(rng, (2, 8, 8, 4)))
    y = kernels.max_pool(x, (2, 2), (2, 2), "valid", "channels_last")
    assert y.is_contiguous()


def test_max_pool_defaults_follow_keras_ops(rng):
    x = _distinct(rng, (2, 6, 6, 3))
    # Spelled out: keras.ops.max_pool(x, 2) without strides raises on JAX (Keras 3.15.1).
    expected = keras.ops.max_pool(x, (2, 2), strides=(2, 2), padding="valid", data_format="channels_last")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernels.max_pool(x, 2)), keras.ops.convert_to_numpy(expected))


def test_max_pool_bad_padding_names_the_argument(rng):
    with pytest.raises(ValueError, match="padding.*Received: padding='full'"):
        kernels.max_pool(_distinct(rng, (1, 4, 4, 1)), 2, padding="full")
