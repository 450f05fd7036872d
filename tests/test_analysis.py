"""`profile_model` against MAC counts written out by hand.

Each expected MAC count below is the textbook formula with the numbers of
the model filled in (output positions x output channels x kernel taps x input
channels per group, and so on), never a call to `sepconv.analysis`.
Parameter counts are checked against Keras' own `count_params()`.
"""

import json

import keras
import pytest
from keras import layers, ops
from rich.console import Console

from sepconv.analysis import MAC_CONVENTION, format_count, profile_model, render_profile

# Zero initializers: the counts do not depend on values, and random ones make
# the JAX backend compile a generator for every weight shape (slow).
Z = {"kernel_initializer": "zeros"}
DZ = {"depthwise_initializer": "zeros"}
SZ = {"depthwise_initializer": "zeros", "pointwise_initializer": "zeros"}


def single_layer_model(layer, input_shape):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def macs_by_name(profile):
    return {row.name: row.macs for row in profile.layers}


# (layer, input shape without batch, hand count for batch 2)
LAYER_CASES = {
    "conv1d_valid_stride2": (
        lambda: layers.Conv1D(5, 3, strides=2, **Z),
        (20, 4),
        2 * 9 * 5 * 3 * 4,  # B * L_out * N * K * M, L_out = (20 - 3) // 2 + 1
    ),
    "conv2d_groups": (
        lambda: layers.Conv2D(8, 3, padding="same", groups=4, **Z),
        (6, 6, 12),
        2 * 36 * 8 * 9 * 3,  # B * H*W * N * K*K * M/groups
    ),
    "conv2d_dilated_valid": (
        lambda: layers.Conv2D(4, 3, dilation_rate=2, **Z),
        (9, 9, 3),
        2 * 25 * 4 * 9 * 3,  # H_out = 9 - 2*(3-1) = 5; dilation adds no MACs
    ),
    "conv3d_stride2": (
        lambda: layers.Conv3D(6, (3, 2, 1), strides=2, padding="same", **Z),
        (5, 6, 7, 2),
        2 * (3 * 3 * 4) * 6 * 6 * 2,  # ceil(5/2)*ceil(6/2)*ceil(7/2) * N * K * M
    ),
    "depthwise1d_multiplier": (
        lambda: layers.DepthwiseConv1D(5, depth_multiplier=3, padding="same", **DZ),
        (10, 4),
        2 * 10 * 4 * 3 * 5,  # B * L * M * m * K
    ),
    "depthwise2d_stride2": (
        lambda: layers.DepthwiseConv2D(3, strides=2, padding="same", **DZ),
        (8, 8, 6),
        2 * 16 * 6 * 9,  # B * (4*4) * M * K*K
    ),
    "separable1d": (
        lambda: layers.SeparableConv1D(7, 3, **SZ),
        (12, 5),
        2 * 10 * (5 * 3 + 5 * 7),  # B * L_out * (M*K + M*N)
    ),
    "separable2d_multiplier_stride": (
        lambda: layers.SeparableConv2D(16, 3, strides=2, depth_multiplier=2, padding="same", **SZ),
        (8, 8, 3),
        2 * 16 * (3 * 2 * 9 + 3 * 2 * 16),  # B * (4*4) * (M*m*K*K + M*m*N)
    ),
    "conv1d_transpose": (
        lambda: layers.Conv1DTranspose(4, 3, strides=2, **Z),
        (6, 5),
        2 * 6 * 5 * 3 * 4,  # counted on the input: B * L_in * M * K * N
    ),
    "conv2d_transpose_same": (
        lambda: layers.Conv2DTranspose(3, (2, 3), strides=2, padding="same", **Z),
        (4, 5, 6),
        2 * 20 * 6 * 6 * 3,  # B * H_in*W_in * M * K_h*K_w * N
    ),
    "conv3d_transpose": (
        lambda: layers.Conv3DTranspose(2, 2, strides=2, **Z),
        (3, 3, 3, 4),
        2 * 27 * 4 * 8 * 2,  # B * D*H*W * M * K^3 * N
    ),
    "dense_on_3d_input": (
        lambda: layers.Dense(3, **Z),
        (7, 5),
        2 * 7 * 5 * 3,  # B * T * in * out
    ),
    "dense_on_4d_input": (
        lambda: layers.Dense(6, **Z),
        (3, 4, 5),
        2 * 12 * 5 * 6,
    ),
    "einsum_dense_3d": (
        lambda: layers.EinsumDense("abc,cd->abd", output_shape=(7, 8), **Z),
        (7, 5),
        2 * 7 * 8 * 5,  # B * T * out * contracted
    ),
    "einsum_dense_heads": (
        lambda: layers.EinsumDense("abc,cde->abde", output_shape=(6, 2, 4), **Z),
        (6, 10),
        2 * 6 * 2 * 4 * 10,
    ),
    "einsum_dense_ellipsis": (
        lambda: layers.EinsumDense("...b,bc->...c", output_shape=3, **Z),
        (4, 9),
        2 * 4 * 9 * 3,
    ),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_macs_match_hand_counts(case):
    make_layer, input_shape, expected = LAYER_CASES[case]
    model = single_layer_model(make_layer(), input_shape)
    profile = profile_model(model, batch_size=2)
    (row,) = profile.layers
    assert row.macs == expected
    assert row.flops == 2 * expected
    assert profile.macs == expected
    assert row.params == profile.params == model.count_params()
    assert profile.method == "graph"


# The same layers in channels_first layout: counts must not change.
CHANNELS_FIRST_CASES = [
    (lambda: layers.Conv1D(5, 3, strides=2, data_format="channels_first", **Z), (4, 20), 2 * 9 * 5 * 3 * 4),
    (
        lambda: layers.Conv2D(8, 3, padding="same", groups=4, data_format="channels_first", **Z),
        (12, 6, 6),
        2 * 36 * 8 * 9 * 3,
    ),
    (
        lambda: layers.DepthwiseConv2D(3, strides=2, padding="same", data_format="channels_first", **DZ),
        (6, 8, 8),
        2 * 16 * 6 * 9,
    ),
    (
        lambda: layers.SeparableConv2D(
            16, 3, strides=2, depth_multiplier=2, padding="same", data_format="channels_first", **SZ
        ),
        (3, 8, 8),
        2 * 16 * (3 * 2 * 9 + 3 * 2 * 16),
    ),
    (
        lambda: layers.Conv2DTranspose(3, (2, 3), strides=2, padding="same", data_format="channels_first", **Z),
        (6, 4, 5),
        2 * 20 * 6 * 6 * 3,
    ),
    (
        lambda: layers.Conv3D(6, (3, 2, 1), strides=2, padding="same", data_format="channels_first", **Z),
        (2, 5, 6, 7),
        2 * (3 * 3 * 4) * 6 * 6 * 2,
    ),
]


@pytest.mark.parametrize("make_layer, input_shape, expected", CHANNELS_FIRST_CASES)
def test_channels_first(make_layer, input_shape, expected):
    profile = profile_model(single_layer_model(make_layer(), input_shape), batch_size=2)
    assert profile.macs == expected


class DuckDepthwise3D(layers.Layer):
    """A 3-D depthwise convolution known only by its `depthwise_kernel`."""

    def __init__(self, kernel_size, depth_multiplier=1, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.depth_multiplier, self.strides = (kernel_size,) * 3, depth_multiplier, strides
        self.data_format = "channels_last"

    def build(self, input_shape):
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=self.kernel_size + (input_shape[-1], self.depth_multiplier),
            initializer="zeros",
        )

    def depthwise(self, inputs):
        # One single-channel convolution per input channel, in channel order.
        return ops.concatenate(
            [
                ops.conv(inputs[..., c : c + 1], self.depthwise_kernel[..., c : c + 1, :], self.strides, padding="same")
                for c in range(inputs.shape[-1])
            ],
            axis=-1,
        )

    def call(self, inputs):
        return self.depthwise(inputs)

    def output_spatial(self, input_shape):
        return tuple(None if n is None else -(-n // self.strides) for n in input_shape[1:-1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_spatial(input_shape) + (input_shape[-1] * self.depth_multiplier,)


class DuckSeparable3D(DuckDepthwise3D):
    """A 3-D separable convolution known only by its two kernels' names."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(kernel_size, **kwargs)
        self.filters = filters

    def build(self, input_shape):
        super().build(input_shape)
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel",
            shape=(1, 1, 1, input_shape[-1] * self.depth_multiplier, self.filters),
            initializer="zeros",
        )

    def call(self, inputs):
        return ops.conv(self.depthwise(inputs), self.pointwise_kernel)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_spatial(input_shape) + (self.filters,)


class DuckModel(keras.Model):
    """The same two layers in a subclassed model, which must be traced."""

    def __init__(self):
        super().__init__()
        self.dw = DuckDepthwise3D(3, depth_multiplier=2, name="dw3d")
        self.sep = DuckSeparable3D(5, 3, strides=2, name="sep3d")

    def call(self, inputs):
        x = self.dw(inputs)
        return self.sep(x)


@pytest.mark.parametrize("method", ["graph", "trace"])
def test_duck_typed_depthwise_and_separable_layers(method):
    if method == "graph":
        inputs = keras.Input((4, 6, 6, 3))
        x = DuckDepthwise3D(3, depth_multiplier=2, name="dw3d")(inputs)
        model = keras.Model(inputs, DuckSeparable3D(5, 3, strides=2, name="sep3d")(x))
    else:
        model = DuckModel()
    profile = profile_model(model, input_shape=(4, 6, 6, 3))
    assert profile.method == method
    assert profile.not_counted == (() if method == "graph" else (model.name,))  # the subclassed call()
    assert {name: macs for name, macs in macs_by_name(profile).items() if macs is not None} == {
        "dw3d": (4 * 6 * 6) * 3 * 2 * 27,  # D*H*W * M * m * K^3
        "sep3d": (2 * 3 * 3) * (6 * 27 + 6 * 5),  # D*H*W * (M*K^3 + M*N), M = 3 * 2
    }
    assert profile.params == model.count_params() == 3 * 2 * 27 + 6 * 27 + 6 * 5


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_sepconv_layers(data_format):
    from sepconv import layers as sep

    zeros = {"depthwise_initializer": "zeros", "data_format": data_format}
    separable = sep.DepthwiseSeparableConv2D(
        16, 3, strides=2, padding="same", depth_multiplier=2, depthwise_use_bias=True,
        normalization="batch", pointwise_initializer="zeros", name="sep2d", **zeros,
    )
    depthwise = sep.DepthwiseConv3D(3, padding="same", depth_multiplier=3, name="dw3d", **zeros)
    image = keras.Input((3, 8, 8) if data_format == "channels_first" else (8, 8, 3))
    volume = keras.Input((2, 4, 4, 5) if data_format == "channels_first" else (4, 4, 5, 2))
    model = keras.Model([image, volume], [separable(image), depthwise(volume)])
    profile = profile_model(model)
    assert macs_by_name(profile) == {
        "sep2d": (4 * 4) * (3 * 2 * 9 + 3 * 2 * 16),  # H*W * (M*m*K*K + M*m*N)
        "dw3d": (4 * 4 * 5) * 2 * 3 * 27,  # D*H*W * M * m * K^3
    }
    # The separable layer's own BatchNormalization counts in its row.
    assert profile.params == model.count_params() == sum(row.params for row in profile.layers)
    rows = {row.name: row for row in profile.layers}
    assert rows["sep2d"].non_trainable_params == 2 * 16  # moving mean and variance


def test_shared_layer_counts_every_call_and_its_weights_once():
    inputs = keras.Input((4,))
    shared = layers.Dense(4, name="shared", **Z)
    model = keras.Model(inputs, shared(shared(inputs)))
    profile = profile_model(model)
    assert [(row.name, row.call_index, row.macs, row.params) for row in profile.layers] == [
        ("shared", 1, 16, 20),
        ("shared", 2, 16, 0),
    ]
    assert profile.macs == 32
    assert profile.params == model.count_params() == 20
    # Each call reads the weights again.
    assert [row.weight_bytes for row in profile.layers] == [80, 80]


def test_nested_sequential_and_shared_submodel():
    stem = keras.Sequential([layers.Conv2D(4, 3, padding="same", name="conv", **Z), layers.ReLU(name="relu")], name="stem")
    branch_in = keras.Input((8, 8, 4))
    branch = keras.Model(branch_in, layers.Conv2D(2, 1, name="proj", **Z)(branch_in), name="branch")
    inputs = keras.Input((8, 8, 3))
    x = stem(inputs)
    merged = layers.Add(name="add")([branch(x), branch(x)])
    outputs = layers.Dense(5, name="head", **Z)(layers.Flatten(name="flatten")(merged))
    model = keras.Model(inputs, outputs)
    profile = profile_model(model)
    rows = [(row.name, row.call_index, row.macs) for row in profile.layers]
    assert rows[:2] == [("stem/conv", 1, 64 * 4 * 9 * 3), ("stem/relu", 1, 0)]
    assert sorted(rows[2:4]) == [("branch/proj", 1, 64 * 2 * 4), ("branch/proj", 2, 64 * 2 * 4)]
    assert rows[4:] == [("add", 1, 0), ("flatten", 1, 0), ("head", 1, 128 * 5)]
    assert profile.macs == 64 * 4 * 9 * 3 + 2 * 64 * 2 * 4 + 128 * 5
    assert profile.params == sum(row.params for row in profile.layers) == model.count_params()


def test_keras_ops_between_layers_count_zero():
    inputs = keras.Input((3,))
    x = layers.Dense(3, name="a", **Z)(inputs)
    outputs = layers.Dense(2, name="b", **Z)(x + inputs)  # a keras.ops Add node
    profile = profile_model(keras.Model(inputs, outputs))
    assert [row.macs for row in profile.layers] == [9, 0, 6]
    assert profile.not_counted == ()


class Scale(layers.Layer):
    """A layer without a MAC rule."""

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return inputs * self.gamma


class Block(layers.Layer):
    """An unknown layer made of known sub-layers, with one weight of its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(4, 3, padding="same", name="conv", **Z)
        self.norm = layers.BatchNormalization(name="norm")

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(), initializer="ones")

    def call(self, inputs):
        x = self.conv(inputs)
        x = self.norm(x)
        return x * self.alpha


class Residual(layers.Layer):
    """A container without weights of its own: known sub-layers plus an add."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(2, 1, name="conv", **Z)

    def call(self, inputs):
        return inputs + self.conv(inputs)


def test_containers_are_listed_even_without_weights():
    inputs = keras.Input((5, 3, 2))
    x = Residual(name="residual")(inputs)
    outputs = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha", **Z)(x[:, :, 0], x[:, :, 1])
    profile = profile_model(keras.Model(inputs, outputs))
    macs = macs_by_name(profile)
    assert macs["residual"] is None and macs["residual/conv"] == 15 * 2 * 2
    # Attention: four EinsumDense projections counted, the score products not.
    assert macs["mha"] is None
    assert macs["mha/query"] == macs["mha/key"] == macs["mha/value"] == 5 * 2 * 2 * 4  # T * in * heads * key_dim
    assert macs["mha/attention_output"] == 5 * 2 * 4 * 2
    assert set(profile.not_counted) == {"residual", "mha"}
    assert [row.name for row in profile.layers if row.container] == ["residual", "mha"]


def test_unknown_layers_are_listed_not_dropped():
    inputs = keras.Input((6, 6, 2))
    x = Scale(name="scale")(inputs)
    outputs = Block(name="block")(x)
    model = keras.Model(inputs, outputs)
    profile = profile_model(model)
    rows = {row.name: row for row in profile.layers}
    assert list(rows) == ["scale", "block", "block/conv", "block/norm"]
    assert rows["scale"].macs is None and rows["scale"].params == 2
    assert rows["block"].macs is None and rows["block"].params == 1  # only its own weight
    assert rows["block/conv"].macs == 36 * 4 * 9 * 2
    assert rows["block/norm"].macs == 0
    assert rows["block/norm"].non_trainable_params == 8
    assert profile.not_counted == ("scale", "block")
    assert profile.macs == 36 * 4 * 9 * 2
    assert profile.params == model.count_params() == 2 + 1 + (9 * 2 * 4 + 4) + 16
    assert profile.non_trainable_params == 8


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = layers.Conv2D(8, 3, strides=2, padding="same", name="conv", **Z)
        self.block = Block(name="block")
        self.head = layers.Dense(10, name="head", **Z)
        self.spare = layers.Dense(3, name="spare", **Z)  # built, never called

    def build(self, input_shape):
        self.spare.build((None, 7))

    def call(self, inputs):
        x = self.conv(inputs)
        x = self.block(x)
        return self.head(ops.mean(x, axis=(1, 2)))


def test_subclassed_model_is_traced():
    model = Subclassed()
    with pytest.raises(ValueError, match=r"pass input_shape .* Received: input_shape=None$"):
        profile_model(model)
    profile = profile_model(model, input_shape=(16, 16, 3), batch_size=3)
    assert profile.method == "trace"
    assert macs_by_name(profile) == {
        "subclassed": None,  # its own call() (here an ops.mean) is not visible
        "conv": 3 * 64 * 8 * 9 * 3,
        "block": None,
        "block/conv": 3 * 64 * 4 * 9 * 8,
        "block/norm": 0,
        "head": 3 * 4 * 10,
    }
    rows = {row.name: row for row in profile.layers}
    assert rows["conv"].output_shapes == ((3, 8, 8, 8),)
    assert rows["subclassed"].container and rows["subclassed"].params == 0
    assert profile.unused_weights == ("subclassed/spare/kernel", "subclassed/spare/bias")
    assert profile.params == model.count_params()
    assert sum(row.params for row in profile.layers) == model.count_params() - (7 * 3 + 3)


def test_unknown_dimensions_need_an_input_shape():
    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv", **Z)(inputs)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D(name="pool")(x))
    with pytest.raises(ValueError) as error:
        profile_model(model)
    assert "layer 'conv' has a tensor of shape (None, None, None, 3)" in str(error.value)
    assert str(error.value).endswith("Received: input_shape=None")
    profile = profile_model(model, input_shape=(10, 12, 3))
    assert profile.method == "graph"
    assert profile.macs == 120 * 4 * 9 * 3


def test_multi_input_model():
    a, b = keras.Input((4,)), keras.Input((6,))
    joined = layers.Concatenate(name="cat")([a, b])
    model = keras.Model([a, b], layers.Dense(2, name="head", **Z)(joined))
    assert profile_model(model).macs == 10 * 2
    assert profile_model(model, input_shape=[(4,), (6,)], batch_size=2).macs == 2 * 10 * 2
    with pytest.raises(ValueError, match=r"input_shape must give one shape per input. Received: input_shape=\(4,\)$"):
        profile_model(model, input_shape=(4,))


def test_bytes_and_arithmetic_intensity():
    model = single_layer_model(layers.Conv2D(4, 3, padding="same", name="conv", **Z), (8, 8, 3))
    (row,) = profile_model(model, batch_size=2).layers
    assert row.activation_bytes_read == 2 * 8 * 8 * 3 * 4  # float32
    assert row.activation_bytes_written == 2 * 8 * 8 * 4 * 4
    assert row.weight_bytes == (3 * 3 * 3 * 4 + 4) * 4
    assert row.arithmetic_intensity == pytest.approx(2 * row.macs / (1536 + 2048 + 448))
    (half,) = profile_model(model, batch_size=2, dtype_bytes=2).layers
    assert half.bytes_moved * 2 == row.bytes_moved


def test_mixed_precision_uses_each_tensors_dtype():
    layer = layers.Dense(4, dtype="mixed_float16", name="dense", **Z)
    (row,) = profile_model(single_layer_model(layer, (8,))).layers
    assert row.activation_bytes_read == 8 * 4  # the float32 input
    assert row.activation_bytes_written == 4 * 2  # the float16 output
    assert row.weight_bytes == (8 * 4 + 4) * 4  # float32 variables


def test_to_dict_is_json_and_consistent():
    inputs = keras.Input((6, 6, 2))
    outputs = Scale(name="scale")(layers.Conv2D(3, 3, name="conv", **Z)(inputs))
    profile = profile_model(keras.Model(inputs, outputs), batch_size=2)
    data = json.loads(json.dumps(profile.to_dict()))
    assert data["convention"] == MAC_CONVENTION
    assert data["totals"]["macs"] == 2 * 16 * 3 * 9 * 2
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]
    assert data["totals"]["params"] == (9 * 2 * 3 + 3) + 3
    assert data["not_counted"] == ["scale"]
    assert [row["name"] for row in data["layers"]] == ["conv", "scale"]
    assert data["layers"][1]["macs"] is None and data["layers"][1]["arithmetic_intensity"] is None
    assert data["layers"][0]["output_shapes"] == [[2, 4, 4, 3]]


def test_render_profile_names_shared_and_uncounted_calls():
    inputs = keras.Input((4,))
    shared = layers.Dense(4, name="shared", **Z)
    model = keras.Model(inputs, Scale(name="scale")(shared(shared(inputs))))
    console = Console(record=True, width=200)
    console.print(render_profile(profile_model(model)))
    text = console.export_text()
    assert "shared (call 2)" in text
    assert "not counted" in text
    assert "Not counted (1 call of a layer without a MAC rule, excluded from the MAC total): scale" in text
    assert "MACs: 32 (32); FLOPs: 64 (64)" in text
    assert MAC_CONVENTION in " ".join(text.split())


@pytest.mark.parametrize(
    "value, unit, text",
    [(568_740_352, "", "568.74M"), (15_470_264_320, "", "15.47G"), (1_792, "B", "1.79KB"), (999, "", "999"), (None, "", "-")],
)
def test_format_count(value, unit, text):
    assert format_count(value, unit) == text


class Broken(keras.Model):
    def call(self, inputs):
        raise RuntimeError("broken call")


def test_trace_restores_layer_call_on_error():
    original = keras.layers.Layer.__call__
    with pytest.raises(RuntimeError, match="broken call"):
        profile_model(Broken(), input_shape=(3,))
    assert keras.layers.Layer.__call__ is original


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be positive. Received: batch_size=0"),
        ({"dtype_bytes": 0}, ValueError, "dtype_bytes must be positive. Received: dtype_bytes=0"),
        ({"input_shape": (0, 3)}, ValueError, "Received: input_shape=(0, 3)"),
        ({"input_shape": "32x32"}, ValueError, "Received: input_shape='32x32'"),
    ],
)
def test_argument_errors(kwargs, error, message):
    model = single_layer_model(layers.Dense(2, **Z), (3,))
    with pytest.raises(error) as raised:
        profile_model(model, **kwargs)
    assert str(raised.value).endswith(message)


def test_model_must_be_a_keras_layer():
    with pytest.raises(TypeError, match="model must be a Keras model or layer. Received: model=str"):
        profile_model("mobilenet")


# MobileNet (alpha 1, 224x224) counted from Howard et al. 2017, Table 1:
# (input side, kernel side, in, out, stride) of each convolution.
MOBILENET_TABLE_1 = [(224, 3, 3, 32, 2)] + [
    (side, k, cin, cout, stride)
    for side, cin, cout, stride in [
        (112, 32, 64, 1), (112, 64, 128, 2), (56, 128, 128, 1), (56, 128, 256, 2), (28, 256, 256, 1),
        (28, 256, 512, 2), *[(14, 512, 512, 1)] * 5, (14, 512, 1024, 2), (7, 1024, 1024, 1),
    ]
    for k in ("dw", "pw")
]


def mobilenet_table_1_macs():
    total = 0
    for side, kernel, cin, cout, stride in MOBILENET_TABLE_1:
        out_side = side // stride
        if kernel == "dw":
            total += out_side**2 * 9 * cin  # depthwise 3x3 on cin channels
        elif kernel == "pw":
            total += out_side**2 * cin * cout  # pointwise cin -> cout at the depthwise output size
        else:
            total += out_side**2 * kernel**2 * cin * cout
    return total + 1024 * 1000  # the 1024 -> 1000 classifier


@pytest.fixture(scope="module")
def mobilenet():
    return keras.applications.MobileNet(weights=None)


def test_mobilenet_matches_the_paper(mobilenet):
    profile = profile_model(mobilenet)
    assert profile.macs == mobilenet_table_1_macs()
    # Howard et al. 2017, Table 8: 569 million mult-adds, 4.2 million parameters.
    assert profile.macs == pytest.approx(569e6, rel=0.002)
    assert profile.params == mobilenet.count_params() == sum(row.params for row in profile.layers)
    assert profile.not_counted == () and profile.unused_weights == ()


def test_mobilenet_at_another_size_scales_with_the_area(mobilenet):
    # A 448x448 input has 4 times the positions in every layer (all sides stay
    # even); only the classifier after global pooling stays the same.
    profile = profile_model(mobilenet, input_shape=(448, 448, 3))
    assert profile.method == "graph"
    assert profile.input_shapes == ((448, 448, 3),)
    assert profile.macs == (mobilenet_table_1_macs() - 1024 * 1000) * 4 + 1024 * 1000


def vgg16_macs():
    """Simonyan & Zisserman 2015, Table 1, configuration D, at 224x224."""
    convs = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128)]
    convs += [(56, 128, 256)] + [(56, 256, 256)] * 2 + [(28, 256, 512)] + [(28, 512, 512)] * 2
    convs += [(14, 512, 512)] * 3
    fully_connected = 7 * 7 * 512 * 4096 + 4096 * 4096 + 4096 * 1000
    return sum(side**2 * 9 * cin * cout for side, cin, cout in convs) + fully_connected


# (application, published MACs, source). All within 2%.
APPLICATIONS = {
    "MobileNet": (569e6, "Howard et al. 2017, arXiv:1704.04861, Table 8"),
    "MobileNetV2": (300e6, "Sandler et al. 2018, arXiv:1801.04381, Table 4"),
    "Xception": (8.4e9, "commonly quoted at 299x299; the Xception paper gives no count"),
    "VGG16": (15.47e9, "commonly quoted; equals Simonyan & Zisserman 2015 config D, counted in vgg16_macs"),
    "ResNet50": (3.8e9, "He et al. 2016, arXiv:1512.03385, Table 1 ('3.8 x 10^9 FLOPs', i.e. mult-adds)"),
    "EfficientNetB0": (0.39e9, "Tan & Le 2019, arXiv:1905.11946, Table 2 ('0.39B FLOPS', mult-adds)"),
    "ConvNeXtTiny": (4.5e9, "Liu et al. 2022, arXiv:2201.03545, Table 10 (4.5G FLOPs, fvcore mult-adds)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_applications_match_published_figures(name):
    published, _source = APPLICATIONS[name]
    model = getattr(keras.applications, name)(weights=None)
    profile = profile_model(model)
    assert profile.params == model.count_params() == sum(row.params for row in profile.layers)
    assert profile.unused_weights == ()
    assert profile.macs == pytest.approx(published, rel=0.02)
    if name == "VGG16":
        assert profile.macs == vgg16_macs()
    if name == "ConvNeXtTiny":
        # Its LayerScale (an elementwise scale, a private Keras layer) has no
        # MAC rule: listed, not dropped.
        assert len(profile.not_counted) == 18
        assert all(row.endswith("layer_scale") for row in profile.not_counted)
    else:
        assert profile.not_counted == ()
