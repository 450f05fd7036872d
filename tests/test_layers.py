"""DepthwiseSeparableConv*D and DepthwiseConv3D against independent references."""

import re

import keras
import numpy as np
import pytest

import reference
import sepconv
from helpers import DATA_FORMATS, to_format
from sepconv import kernels
from sepconv.layers import DepthwiseConv3D, presets

LAYERS = {1: sepconv.DepthwiseSeparableConv1D, 2: sepconv.DepthwiseSeparableConv2D, 3: sepconv.DepthwiseSeparableConv3D}
IMPLEMENTATIONS = ("native", "shifted")

# (rank, spatial, kernel, strides, dilation, padding, multiplier, filters)
CASES = [
    (1, (11,), 3, 1, 1, "valid", 1, 4),
    (1, (12,), 5, 2, 1, "same", 2, 3),
    (1, (10,), 3, 1, 2, "causal", 1, 5),
    (1, (13,), 2, 3, 1, "causal", 3, 2),
    (2, (7, 9), 3, 1, 1, "same", 1, 5),
    (2, (8, 8), 3, 2, 1, "same", 2, 4),
    (2, (9, 7), (3, 1), (2, 1), 1, "valid", 1, 3),
    (2, (11, 10), 3, 1, 2, "same", 1, 4),
    (2, (10, 9), 3, 2, 2, "valid", 2, 3),
    (2, (6, 7), 2, 2, 1, "same", 1, 6),
    (2, (5, 5), 5, 1, 1, "valid", 3, 2),
    (3, (5, 6, 4), 3, 1, 1, "same", 1, 3),
    (3, (6, 5, 5), (3, 2, 1), 2, 1, "valid", 2, 2),
    (3, (7, 5, 6), 3, (1, 2, 1), (2, 1, 1), "same", 1, 2),
]


def _case_id(case):
    rank, spatial, kernel, strides, dilation, padding, multiplier, filters = case
    return f"{rank}d-{'x'.join(map(str, spatial))}-k{kernel}-s{strides}-d{dilation}-{padding}-m{multiplier}"


def _tuple(value, rank):
    return (value,) * rank if isinstance(value, int) else tuple(value)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_numpy_reference(case, data_format, implementation, rng):
    rank, spatial, kernel_size, strides, dilation, padding, multiplier, filters = case
    kernels.set_depthwise_implementation(implementation)
    channels = 3
    x = rng.normal(size=(2, *spatial, channels)).astype("float32")
    # Tutorial arrangement exercises both biases and the middle activation.
    layer = LAYERS[rank](
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        depth_multiplier=multiplier,
        data_format=data_format,
        depthwise_use_bias=True,
        depthwise_activation="relu",
        activation="relu",
    )
    layer.build(to_format(x, data_format).shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()]
    layer.set_weights(weights)
    dw_kernel, dw_bias, pw_kernel, bias = weights

    got = keras.ops.convert_to_numpy(layer(to_format(x, data_format)))

    middle = reference.relu(
        reference.depthwise(x, dw_kernel, _tuple(strides, rank), padding, _tuple(dilation, rank)) + dw_bias
    )
    expected = to_format(reference.relu(reference.pointwise(middle, pw_kernel) + bias), data_format)
    assert got.shape == expected.shape == layer.compute_output_shape(to_format(x, data_format).shape)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, padding="same"),
        dict(kernel_size=(3, 5), strides=2, padding="valid", depth_multiplier=2),
        dict(kernel_size=3, dilation_rate=2, padding="same", data_format="channels_first"),
    ],
)
def test_matches_keras_separable_conv2d(kwargs, implementation, rng):
    kernels.set_depthwise_implementation(implementation)
    channels_first = kwargs.get("data_format") == "channels_first"
    x = rng.normal(size=(2, 4, 10, 11) if channels_first else (2, 10, 11, 4)).astype("float32")
    ours = sepconv.DepthwiseSeparableConv2D(6, activation="relu", **kwargs)
    theirs = keras.layers.SeparableConv2D(6, activation="relu", **kwargs)
    ours.build(x.shape)
    theirs.build(x.shape)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]
    theirs.set_weights([rng.normal(size=w.shape).astype("float32") for w in theirs.weights])
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-4, atol=1e-4
    )


def test_matches_keras_separable_conv1d(rng):
    x = rng.normal(size=(2, 15, 3)).astype("float32")
    ours = sepconv.DepthwiseSeparableConv1D(5, 3, strides=2, padding="same", depth_multiplier=2)
    theirs = keras.layers.SeparableConv1D(5, 3, strides=2, padding="same", depth_multiplier=2)
    theirs.build(x.shape)
    ours.build(x.shape)
    theirs.set_weights([rng.normal(size=w.shape).astype("float32") for w in theirs.weights])
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_depthwise_conv3d_matches_grouped_conv3d(implementation, rng):
    kernels.set_depthwise_implementation(implementation)
    x = rng.normal(size=(2, 6, 7, 5, 3)).astype("float32")
    ours = DepthwiseConv3D((3, 3, 2), strides=(1, 2, 1), padding="same", depth_multiplier=2)
    ours.build(x.shape)
    kernel = rng.normal(size=(3, 3, 2, 3, 2)).astype("float32")
    bias = rng.normal(size=(6,)).astype("float32")
    ours.set_weights([kernel, bias])
    # Keras' Conv3D with groups == channels: kernel (k..., 1, C*M), channel-major outputs.
    theirs = keras.layers.Conv3D(6, (3, 3, 2), strides=(1, 2, 1), padding="same", groups=3)
    theirs.build(x.shape)
    theirs.set_weights([kernel.reshape(3, 3, 2, 1, 6), bias])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_training_step_matches_keras(implementation, rng):
    """One SGD step updates weights exactly as for Keras' SeparableConv2D: gradients agree."""
    kernels.set_depthwise_implementation(implementation)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    y = rng.normal(size=(4, 4, 4, 5)).astype("float32")

    def model_with(layer):
        model = keras.Sequential([keras.Input((8, 8, 3)), layer])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
        return model

    theirs = model_with(keras.layers.SeparableConv2D(5, 3, strides=2, padding="same", activation="tanh"))
    ours = model_with(sepconv.DepthwiseSeparableConv2D(5, 3, strides=2, padding="same", activation="tanh"))
    ours.set_weights(theirs.get_weights())
    theirs.train_on_batch(x, y)
    ours.train_on_batch(x, y)
    before = model_with(keras.layers.SeparableConv2D(5, 3, strides=2, padding="same")).get_weights()
    for got, expected, start in zip(ours.get_weights(), theirs.get_weights(), before):
        assert not np.allclose(expected, start)  # the step really moved the weights
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_parameter_counts_match_tutorial_and_keras():
    shape = (None, 32, 32, 3)

    def count(layer):
        layer.build(shape)
        return layer.count_params()

    regular = keras.layers.Conv2D(64, 3)
    assert count(regular) == 3 * 3 * 3 * 64 + 64 == 1792
    assert count(presets.tutorial(64, 3)) == (3 * 3 * 3 + 3) + (3 * 64 + 64) == 286
    assert count(presets.keras_style(64, 3)) == 3 * 3 * 3 + 3 * 64 + 64 == 283
    assert count(keras.layers.SeparableConv2D(64, 3)) == 283
    assert count(presets.mobilenet(64, 3)) == 27 + 4 * 3 + 192 + 4 * 64
    assert count(presets.xception(64, 3)) == 27 + 192 + 4 * 64


def test_mobilenet_preset_order_is_dw_bn_relu_pw_bn_relu(rng):
    x = rng.normal(size=(8, 6, 6, 3)).astype("float32")
    layer = presets.mobilenet(4, 3, padding="same")
    layer.build(x.shape)
    dw_kernel = keras.ops.convert_to_numpy(layer.depthwise_kernel)
    pw_kernel = keras.ops.convert_to_numpy(layer.pointwise_kernel)
    out = keras.ops.convert_to_numpy(layer(x, training=True))

    def batch_norm(v):  # training-mode BN with gamma=1, beta=0, Keras' epsilon
        mean = v.mean(axis=(0, 1, 2))
        var = v.var(axis=(0, 1, 2))
        return (v - mean) / np.sqrt(var + 1e-3)

    middle = reference.relu(batch_norm(reference.depthwise(x, dw_kernel, (1, 1), "same", (1, 1))))
    expected = reference.relu(batch_norm(reference.pointwise(middle, pw_kernel)))
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(filters=0, kernel_size=3), ValueError, "filters must be positive. Received: filters=0"),
        (dict(filters=-4, kernel_size=3), ValueError, "filters must be positive. Received: filters=-4"),
        (dict(filters=8, kernel_size=(0, 3)), ValueError, r"kernel_size must be positive. Received: kernel_size=\(0, 3\)"),
        (dict(filters=8, kernel_size=(3, 3, 3)), ValueError, r"kernel_size must be an integer or a tuple of 2 integers. Received: kernel_size=\(3, 3, 3\)"),
        (dict(filters=8, kernel_size=3, strides=0), ValueError, r"strides must be positive. Received: strides=\(0, 0\)"),
        (dict(filters=8, kernel_size=3, depth_multiplier=0), ValueError, "depth_multiplier must be positive. Received: depth_multiplier=0"),
        (dict(filters=8, kernel_size=3, padding="full"), ValueError, "padding must be one of 'valid', 'same'. Received: padding='full'"),
        (dict(filters=8, kernel_size=3, padding="causal"), ValueError, "padding must be one of 'valid', 'same'. Received: padding='causal'"),
        (dict(filters=8, kernel_size=3, data_format="NHWC"), ValueError, "data_format must be 'channels_last' or 'channels_first'. Received: data_format='NHWC'"),
        (dict(filters=8, kernel_size=3, normalization="group"), ValueError, "normalization must be one of None, 'batch'. Received: normalization='group'"),
        (dict(filters=2.5, kernel_size=3), TypeError, "filters must be an integer. Received: filters=2.5"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        sepconv.DepthwiseSeparableConv2D(**kwargs)


def test_wrong_input_rank_is_reported():
    layer = sepconv.DepthwiseSeparableConv2D(4, 3)
    with pytest.raises(ValueError, match=r"expects inputs of rank 4 .* Received: input_shape=\(None, 10, 3\)"):
        layer.build((None, 10, 3))


def test_undefined_channels_are_reported():
    layer = sepconv.DepthwiseSeparableConv2D(4, 3)
    with pytest.raises(ValueError, match=r"channel dimension .* must be defined. Received: input_shape=\(None, 8, 8, None\)"):
        layer.build((None, 8, 8, None))


def test_unknown_implementation_is_reported():
    message = "^name must be one of 'auto', 'native', 'shifted', 'triton'.* Received: name='fast'$"
    with pytest.raises(ValueError, match=message):
        kernels.set_depthwise_implementation("fast")


# (layer, kernel_size, dilation_rate, channels_last input shape): a "valid" window larger than the input.
TOO_SMALL = [
    (lambda **kw: sepconv.DepthwiseSeparableConv1D(64, 11, strides=5, **kw), (11,), (1,), (10, 3)),
    (lambda **kw: sepconv.DepthwiseSeparableConv1D(8, 3, dilation_rate=5, **kw), (3,), (5,), (10, 3)),
    (lambda **kw: sepconv.DepthwiseSeparableConv2D(8, 5, **kw), (5, 5), (1, 1), (4, 4, 3)),
    (lambda **kw: sepconv.DepthwiseSeparableConv2D(8, (3, 5), **kw), (3, 5), (1, 1), (6, 4, 3)),
    (
        lambda **kw: sepconv.DepthwiseSeparableConv3D(8, 3, dilation_rate=(1, 2, 1), **kw),
        (3, 3, 3), (1, 2, 1), (5, 4, 5, 3),
    ),
    (lambda **kw: DepthwiseConv3D((2, 2, 6), **kw), (2, 2, 6), (1, 1, 1), (5, 5, 5, 3)),
]
TOO_SMALL_IDS = ["1d-k11-s5", "1d-k3-d5", "2d-k5", "2d-k3x5", "3d-d1x2x1", "depthwise3d-k2x2x6"]


def _channels_first(shape):
    return (shape[-1],) + shape[:-1]


def _window_message(name, cls, kernel_size, dilation, input_shape):
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel_size, dilation))
    dilation = f", dilation_rate={dilation}" if any(d > 1 for d in dilation) else ""
    return "^" + re.escape(
        f"Layer '{name}' ({cls}): with padding='valid' the depthwise window, (kernel_size - 1) * dilation_rate + 1 "
        f"= {effective}, is larger than the input; use padding='same' or a larger input. "
        f"Received: input_shape={input_shape}, kernel_size={kernel_size}{dilation}"
    ) + "$"


@pytest.mark.parametrize("how", ["build", "compute_output_shape", "keras_input", "eager"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("make, kernel_size, dilation, shape", TOO_SMALL, ids=TOO_SMALL_IDS)
def test_window_larger_than_input_is_reported(make, kernel_size, dilation, shape, data_format, how):
    """Not an empty tensor (TensorFlow) or an error from inside the backend (JAX, PyTorch)."""
    layer = make(data_format=data_format, name="dsc")
    shape = shape if data_format == "channels_last" else _channels_first(shape)
    batch = 2 if how == "eager" else None
    message = _window_message("dsc", type(layer).__name__, kernel_size, dilation, (batch, *shape))
    with pytest.raises(ValueError, match=message):
        if how == "build":
            layer.build((None, *shape))
        elif how == "compute_output_shape":
            layer.compute_output_shape((None, *shape))
        elif how == "keras_input":
            layer(keras.Input(shape))
        else:
            layer(np.zeros((2, *shape), "float32"))


@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_window_larger_than_input_known_only_at_call(data_format):
    """A layer built for inputs of any length meets a too short one."""
    layer = sepconv.DepthwiseSeparableConv1D(4, 11, data_format=data_format, name="dsc")
    model = keras.Sequential([keras.Input((None, 3) if data_format == "channels_last" else (3, None)), layer])
    short, long = (to_format(np.zeros((2, n, 3), "float32"), data_format) for n in (10, 11))
    message = _window_message("dsc", "DepthwiseSeparableConv1D", (11,), (1,), short.shape)
    with pytest.raises(ValueError, match=message[1:-1]):  # inside Keras' "Exception encountered when calling" note
        model(short)
    assert keras.ops.convert_to_numpy(model(long)).shape == to_format(np.zeros((2, 1, 4)), data_format).shape


@pytest.mark.parametrize("padding", ["same", "causal"])
def test_same_and_causal_padding_take_any_length(padding):
    layer = sepconv.DepthwiseSeparableConv1D(4, 11, strides=5, padding=padding)
    assert tuple(layer(np.zeros((2, 10, 3), "float32")).shape) == (2, 2, 4)  # ceil(10 / 5) steps


ALL_OPTIONS = dict(
    filters=7,
    kernel_size=(3, 2),
    strides=(2, 1),
    padding="same",
    data_format="channels_last",
    dilation_rate=1,
    depth_multiplier=2,
    activation="relu",
    use_bias=False,
    depthwise_use_bias=True,
    depthwise_activation="gelu",
    depthwise_normalization="batch",
    normalization="batch",
    depthwise_initializer="he_normal",
    pointwise_initializer="lecun_normal",
    bias_initializer="ones",
    depthwise_regularizer="l2",
    pointwise_regularizer="l1",
    bias_regularizer="l2",
    activity_regularizer="l1",
    depthwise_constraint="non_neg",
    pointwise_constraint="unit_norm",
    bias_constraint="max_norm",
)


def test_config_covers_every_argument():
    layer = sepconv.DepthwiseSeparableConv2D(**ALL_OPTIONS)
    config = layer.get_config()
    assert set(ALL_OPTIONS) <= set(config)
    clone = sepconv.DepthwiseSeparableConv2D.from_config(config)
    assert clone.get_config() == config


def test_keras_file_round_trip(tmp_path, rng):
    x = rng.normal(size=(3, 8, 8, 4)).astype("float32")
    inputs = keras.Input((8, 8, 4))
    h = sepconv.DepthwiseSeparableConv2D(**{**ALL_OPTIONS, "depthwise_constraint": None})(inputs)
    h = sepconv.DepthwiseSeparableConv3D(2, 2, padding="same")(keras.ops.expand_dims(h, 1))
    h = DepthwiseConv3D(2, padding="same", depth_multiplier=2)(h)
    model = keras.Model(inputs, h)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.weights])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("initializer, keeps_scale", [(None, True), ("glorot_uniform", False)])
def test_default_depthwise_initializer_keeps_activation_scale(initializer, keeps_scale, rng):
    """Six stacked DSC+ReLU layers (the tutorial VGG's convs) at initialization."""
    h = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    for filters in (64, 64, 128, 128, 256, 256):
        layer = sepconv.DepthwiseSeparableConv2D(
            filters, 3, padding="same", activation="relu", depthwise_initializer=initializer
        )
        h = keras.ops.convert_to_numpy(layer(h))
    # Glorot's depthwise fan-in counts every channel: ~1e-6 after six layers.
    assert (h.std() > 0.05) == keeps_scale
