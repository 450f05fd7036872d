"""The model zoo against hand counts and independently built Keras models."""

import keras
import numpy as np
import pytest

import sepconv

from sepconv.models import create_model, list_models


def tutorial_vgg_by_hand(separable):
    """The tutorial's model written directly with Keras layers."""
    conv = keras.layers.SeparableConv2D if separable else keras.layers.Conv2D
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for filters in (64, 128, 256):
        x = conv(filters, 3, padding="same", activation="relu")(x)
        x = conv(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def dsc_layer_params(cin, cout, bn_between, kernel_size=3):
    """Depthwise k x k, pointwise and BN after it (4 numbers per channel), and BN between if `bn_between`."""
    return kernel_size**2 * cin + cin * cout + 4 * cout + (4 * cin if bn_between else 0)


def test_tutorial_vgg_parameter_counts():
    conv = lambda cin, cout: 9 * cin * cout + cout  # noqa: E731
    sep = lambda cin, cout: 9 * cin + cin * cout + cout  # noqa: E731
    pairs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
    dense = 4 * 4 * 256 * 10 + 10
    assert sum(conv(a, b) for a, b in pairs) + dense == 1_186_378
    assert sum(sep(a, b) for a, b in pairs) + dense == 174_821
    assert create_model("vgg").count_params() == tutorial_vgg_by_hand(False).count_params() == 1_186_378
    assert create_model("vgg_separable").count_params() == tutorial_vgg_by_hand(True).count_params() == 174_821
    assert create_model("vgg_keras_separable").count_params() == 174_821
    assert create_model("vgg_keras").count_params() == 1_186_378
    # Tutorial layer: one extra depthwise bias per input channel of each layer.
    assert create_model("vgg_tutorial").count_params() == 174_821 + sum(a for a, _ in pairs)


def test_separable_vgg_computes_what_keras_separable_vgg_computes(rng):
    ours, theirs = create_model("vgg_separable"), tutorial_vgg_by_hand(True)
    theirs.set_weights([rng.normal(scale=0.1, size=w.shape).astype("float32") for w in theirs.weights])
    ours.set_weights(theirs.get_weights())
    x = rng.uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-4, atol=1e-6
    )


def test_sepconv_pooling_vgg_computes_what_keras_only_vgg_computes(rng):
    ours, theirs = create_model("vgg"), create_model("vgg_keras")
    assert {type(layer) for layer in theirs.layers if "pool" in layer.name} == {keras.layers.MaxPooling2D}
    assert {type(layer) for layer in ours.layers if "pool" in layer.name} == {sepconv.layers.MaxPooling2D}
    theirs.set_weights([rng.normal(scale=0.05, size=w.shape).astype("float32") for w in theirs.weights])
    ours.set_weights(theirs.get_weights())
    x = rng.uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_mobilenet_v2_has_keras_applications_parameter_count(alpha):
    # Keras' MobileNetV2 (ImageNet strides; the count does not depend on strides) is an independent build.
    theirs = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=alpha, weights=None, classes=10)
    ours = create_model("mobilenet_v2", alpha=alpha)
    assert ours.count_params() == theirs.count_params()
    assert ours.count_params() > 2_200_000 if alpha == 1.0 else ours.count_params() < 800_000


def test_inverted_residual_computes_what_keras_layers_compute(rng):
    from sepconv.models.mobilenet_v2 import inverted_residual

    inputs = keras.Input((6, 6, 8))
    ours = keras.Model(inputs, inverted_residual(inputs, 8, expansion=3, strides=1, name="b"))
    x = keras.layers.Conv2D(24, 1, use_bias=False)(inputs)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 1, use_bias=False)(x))
    theirs = keras.Model(inputs, keras.layers.Add()([inputs, x]))
    weights = [rng.uniform(0.5, 1.5, size=w.shape).astype("float32") for w in theirs.weights]
    theirs.set_weights(weights)
    # Keras order: expand, BN, depthwise, BN, pointwise, BN; the separable layer holds its kernels first.
    ours.set_weights([weights[i] for i in (0, 1, 2, 3, 4, 5, 10, 6, 7, 8, 9, 11, 12, 13, 14)])
    images = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(images)), keras.ops.convert_to_numpy(theirs(images)), rtol=1e-4, atol=1e-4
    )


def test_dsc_resnet10_parameter_count_by_hand():
    sep = dsc_layer_params
    total = 27 * 32 + 4 * 32  # stem conv and BN
    for cin, cout in [(32, 32), (32, 64), (64, 128), (128, 256)]:
        total += sep(cin, cout, True) + sep(cout, cout, False)
        total += cin * cout + 4 * cout if cin != cout or cout != 32 else 0  # 1x1 projection + BN where shapes change
    total += 256 * 10 + 10
    assert create_model("dsc_resnet10").count_params() == total == 190_922
    assert create_model("dsc_resnet", stages=((16, 1), (32, 2)), blocks_per_stage=1).output.shape == (None, 10)
    # The regular counterpart: 3x3 convolutions (9 * cin * cout, no bias) where the separable layers were.
    regular = total - sum(sep(a, b, True) + sep(b, b, False) - 9 * a * b - 4 * b - 9 * b * b - 4 * b
                          for a, b in [(32, 32), (32, 64), (64, 128), (128, 256)])  # fmt: skip
    assert create_model("resnet10").count_params() == regular


def test_dsc_resnet20_parameter_count_by_hand():
    sep = dsc_layer_params
    total = 27 * 32 + 4 * 32  # the 3x3 stem and its BN
    for cin, cout in [(32, 32), (32, 64), (64, 128)]:  # three blocks a stage, the first changing the width
        total += sep(cin, cout, True) + sep(cout, cout, False) + (cin * cout + 4 * cout if cin != cout else 0)
        total += 2 * (sep(cout, cout, True) + sep(cout, cout, False))
    total += 128 * 10 + 10
    model = create_model("dsc_resnet20")
    assert model.count_params() == total == 150_986
    assert [layer.output.shape[1:] for layer in model.layers if layer.name.endswith("_add")][::3] == [
        (32, 32, 32), (16, 16, 64), (8, 8, 128)
    ]  # fmt: skip


@pytest.mark.parametrize("conv", ["separable", "regular"])
def test_dsc_resnet_kernel_size_reaches_every_convolution_after_the_stem(conv):
    model = create_model("dsc_resnet", stages=((8, 1), (16, 2)), blocks_per_stage=1, kernel_size=5, conv=conv)
    spatial = {w.path: tuple(w.shape[:2]) for w in model.weights if len(w.shape) == 4}
    assert spatial.pop("stem_conv/kernel") == (3, 3)
    wide = {path for path, shape in spatial.items() if shape == (5, 5)}
    assert len(wide) == 4 and all(("depthwise" in path) == (conv == "separable") for path in wide)
    assert all(spatial[path] == (1, 1) for path in set(spatial) - wide)  # pointwise kernels and the projection
    with pytest.raises(ValueError, match=r"kernel_size.*Received: kernel_size=0"):
        create_model("dsc_resnet", kernel_size=0)


def test_dsc_resnet9_parameter_count_by_hand():
    def sep(cin, cout):  # DW-BN-ReLU-PW-BN-ReLU
        return dsc_layer_params(cin, cout, bn_between=True)

    def regular(cin, cout):  # 3x3 convolution without bias, BN
        return 9 * cin * cout + 4 * cout

    stem, head = regular(3, 64), 512 * 10 + 10
    layers = [(64, 128), (128, 128), (128, 128), (128, 256), (256, 512), (512, 512), (512, 512)]
    assert create_model("dsc_resnet9").count_params() == stem + sum(sep(*io) for io in layers) + head == 767_370
    # The regular twin is Page's DAWNBench ResNet-9 (6.5M parameters).
    assert create_model("resnet9").count_params() == stem + sum(regular(*io) for io in layers) + head == 6_577_610
    half = create_model("dsc_resnet9_half")  # width 0.5
    assert [layer.output.shape[1:] for layer in half.layers if layer.name.endswith("_pool")][:3] == [
        (16, 16, 64), (8, 8, 128), (4, 4, 256)
    ]  # fmt: skip
    halved, half_head = [(cin // 2, cout // 2) for cin, cout in layers], 256 * 10 + 10
    assert half.count_params() == regular(3, 32) + sum(sep(*io) for io in halved) + half_head == 201_418
    half_regular = regular(3, 32) + sum(regular(*io) for io in halved) + half_head
    assert create_model("resnet9_half").count_params() == half_regular


def test_separable_resnet_parameter_count_by_hand():
    def block(cin, cout, kernel_size=5):  # DW-BN-ReLU-PW-BN(-ReLU)
        return dsc_layer_params(cin, cout, bn_between=True, kernel_size=kernel_size)

    def regular(cin, cout, kernel_size=5):  # convolution without bias, BN
        return kernel_size**2 * cin * cout + 4 * cout

    def by_hand(layer, channels, depth):
        total = 27 * channels + 4 * channels  # the 3x3 stem and its BN
        for stage in range(3):
            filters = channels * 2**stage
            total += layer(filters // 2, filters) if stage else 0  # the stride-2 layer that doubles the channels
            total += depth * layer(filters, filters)
        return total + 4 * channels * 10 + 10

    model = create_model("separable_resnet")
    assert model.count_params() == by_hand(block, 48, 3) == 210_202
    assert by_hand(block, 8, 1) == 5_298  # the smallest variant other tests build
    assert by_hand(block, 64, 2) == 254_218  # channels=64, depth=2: under 300k, every channel count a multiple of 32
    assert create_model("separable_resnet", channels=8, depth=2, conv="regular").count_params() == by_hand(regular, 8, 2)
    assert [layer.output.shape[1:] for layer in model.layers if layer.name.endswith("_add")][::3] == [
        (32, 32, 48), (16, 16, 96), (8, 8, 192)
    ]  # fmt: skip
    spatial = {tuple(w.shape[:2]) for w in model.weights if len(w.shape) == 4 and "depthwise" in w.path}
    assert spatial == {(5, 5)}
    with pytest.raises(ValueError, match=r"channels.*Received: channels=0"):
        create_model("separable_resnet", channels=0)


def keras_separable_resnet(channels, depth, kernel_size):
    """`separable_resnet` written with Keras' own layers, and those layers in the order ours hold weights."""
    order = []

    def separable(x, filters, strides=1, activation=True):
        dw = keras.layers.DepthwiseConv2D(kernel_size, strides, padding="same", use_bias=False)
        pw, bn1, bn2 = keras.layers.Conv2D(filters, 1, use_bias=False), keras.layers.BatchNormalization(), keras.layers.BatchNormalization()
        order.extend([dw, pw, bn1, bn2])  # a separable layer holds both kernels, then both BNs
        x = bn2(pw(keras.layers.ReLU()(bn1(dw(x)))))
        return keras.layers.ReLU()(x) if activation else x

    inputs = keras.Input((32, 32, 3))
    stem, stem_bn = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False), keras.layers.BatchNormalization()
    order.extend([stem, stem_bn])
    x = keras.layers.ReLU()(stem_bn(stem(inputs)))
    for stage in range(3):
        x = separable(x, channels * 2**stage, strides=2) if stage else x
        for _ in range(depth):
            x = keras.layers.ReLU()(x + separable(x, channels * 2**stage, activation=False))
    dense = keras.layers.Dense(10, activation="softmax")
    order.append(dense)
    return keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(x))), order


def test_separable_resnet_computes_what_keras_layers_compute(rng):
    theirs, order = keras_separable_resnet(channels=8, depth=2, kernel_size=3)
    for layer in order:
        layer.set_weights([rng.uniform(0.5, 1.5, size=w.shape) if len(w.shape) == 1 else
                           rng.normal(scale=0.5 / np.sqrt(np.prod(w.shape[:-1])), size=w.shape) for w in layer.weights])  # fmt: skip
    ours = create_model("separable_resnet", channels=8, depth=2, kernel_size=3)
    ours.set_weights([w for layer in order for w in layer.get_weights()])
    images = rng.uniform(size=(4, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(theirs(images))
    assert expected.max() < 0.99  # not saturated, so the comparison sees every layer
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(images)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name",
    ["mobilenet_v1", "mobilenet_v2", "dsc_resnet", "dsc_resnet10", "resnet10", "dsc_resnet20", "dsc_resnet9",
     "dsc_resnet9_half", "separable_resnet", "vgg_mobilenet"],  # fmt: skip
)
def test_zoo_models_run_and_output_probabilities(name, rng):
    model = create_model(name, num_classes=7)
    out = keras.ops.convert_to_numpy(model(rng.uniform(size=(2, 32, 32, 3)).astype("float32")))
    assert out.shape == (2, 7)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_mobilenet_width_multiplier_scales_pointwise_parameters():
    full, half = create_model("mobilenet_v1"), create_model("mobilenet_v1", alpha=0.5)
    # Pointwise weights dominate and scale with alpha^2 (MobileNets paper, Sec. 3.3).
    assert 0.2 < half.count_params() / full.count_params() < 0.3


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match=r"Known models: .*vgg.* Did you mean vgg_separable.*Received: name='vgg_seprable'"):
        create_model("vgg_seprable")


def test_unknown_conv_type_is_named():
    with pytest.raises(ValueError, match="conv must be one of .* Received: conv='depthwise'"):
        create_model("vgg", conv="depthwise")


def test_create_model_dtype_policy_is_kept_by_the_layers_and_the_global_policy_restored():
    model = create_model("vgg", blocks=((4, 1),), dtype_policy="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers if layer.weights}
    assert policies.pop("predictions") == "float32" and set(policies.values()) == {"mixed_bfloat16"}
    assert {layer.dtype_policy.name for layer in create_model("vgg", blocks=((4, 1),)).layers} == {"float32"}
    with pytest.raises(ValueError, match=r"^dtype_policy must be a Keras dtype policy name .*='bf'$"):
        create_model("vgg", dtype_policy="bf")
    assert keras.config.dtype_policy().name == "float32"


def test_registry_lists_every_builder():
    assert {"vgg", "vgg_separable", "vgg_keras_separable", "vgg_tutorial", "vgg_mobilenet", "mobilenet_v1", "dsc_resnet"} <= set(list_models())
