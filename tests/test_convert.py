"""`sepconv.convert` against the original Keras models and numpy SVDs."""

import io
import json
import math
import re

import keras
import numpy as np
import pytest
from rich.console import Console

from sepconv.convert import convert, factorize, finetune, render_report
from sepconv.data import Batches
from sepconv.layers import DepthwiseSeparableConv1D, DepthwiseSeparableConv2D


def numpy(x):
    return keras.ops.convert_to_numpy(x).astype(np.float64)


def relative_error(expected, got):
    expected, got = numpy(expected), numpy(got)
    return np.linalg.norm(expected - got) / np.linalg.norm(expected)


def randomize(model, rng):
    """Non-zero biases too: Keras initializes them to zero."""
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def slice_singular_values(kernel):
    """Per input channel, the singular values of its (taps, filters) slice: a plain loop."""
    kernel = np.asarray(kernel, dtype=np.float64)
    channels, filters = kernel.shape[-2:]
    return [np.linalg.svd(kernel[..., c, :].reshape(-1, filters), compute_uv=False) for c in range(channels)]


def reconstruct(layer):
    """The regular kernel a depthwise separable layer computes: sum over m of d[..., c, m] p[c*r + m, :]."""
    depthwise, pointwise = numpy(layer.depthwise_kernel), numpy(layer.pointwise_kernel)
    channels, rank = depthwise.shape[-2:]
    pointwise = pointwise.reshape(channels, rank, -1)
    return np.einsum("...cm,cmf->...cf", depthwise, pointwise)


def single_conv(conv, input_shape, rng):
    model = keras.Sequential([keras.Input(input_shape), conv])
    return randomize(model, rng)


def channels_last_reference(conv, x):
    """A channels_first conv's output via the same Keras conv in channels_last layout."""
    config = dict(conv.get_config(), data_format="channels_last", name="twin")
    twin = type(conv).from_config(config)
    to_last = (0, *range(2, x.ndim), 1)
    twin.build((None, *np.transpose(x, to_last).shape[1:]))
    twin.set_weights(conv.get_weights())
    y = numpy(twin(np.transpose(x, to_last)))
    return np.transpose(y, (0, y.ndim - 1, *range(1, y.ndim - 1)))


# (layer, input shape) covering rank, padding, strides, dilation, data format, bias, activation,
# and filters below, equal to and above the kernel area.
EXACT_CASES = [
    (lambda: keras.layers.Conv2D(16, 3, padding="same", activation="relu"), (9, 9, 5)),
    (lambda: keras.layers.Conv2D(4, 3, padding="valid", use_bias=False), (9, 9, 5)),
    (lambda: keras.layers.Conv2D(9, (3, 2), strides=2, padding="same"), (10, 9, 3)),
    (lambda: keras.layers.Conv2D(12, 3, dilation_rate=2, padding="valid", activation="tanh"), (11, 11, 4)),
    (lambda: keras.layers.Conv2D(10, 5, strides=(2, 1), padding="valid", data_format="channels_first"), (3, 11, 12)),
    (
        lambda: keras.layers.Conv2D(
            8, 3, padding="same", dilation_rate=2, data_format="channels_first", use_bias=False
        ),
        (4, 8, 8),
    ),
    (lambda: keras.layers.Conv1D(6, 3, padding="causal", activation="relu"), (12, 4)),
    (lambda: keras.layers.Conv1D(2, 5, strides=2, padding="valid", use_bias=False), (13, 3)),
    (lambda: keras.layers.Conv1D(7, 3, padding="same", dilation_rate=3, data_format="channels_first"), (5, 14)),
]


@pytest.mark.parametrize("make_layer, input_shape", EXACT_CASES)
def test_full_rank_conversion_reproduces_the_original_model(make_layer, input_shape, rng):
    conv = make_layer()
    model = single_conv(conv, input_shape, rng)
    x = rng.normal(size=(3, *input_shape)).astype("float32")
    reference = channels_last_reference(conv, x) if conv.data_format == "channels_first" else model(x)
    # TensorFlow's CPU convolutions refuse channels_first, so the original cannot run to calibrate.
    cannot_run = conv.data_format == "channels_first" and keras.backend.backend() == "tensorflow"
    new_model, report = convert(model, calibration=None if cannot_run else "random")

    layer = new_model.layers[0]
    expected_class = DepthwiseSeparableConv1D if conv.rank == 1 else DepthwiseSeparableConv2D
    assert type(layer) is expected_class
    assert layer.name == conv.name
    assert layer.depth_multiplier == min(math.prod(conv.kernel_size), conv.filters)
    assert (layer.use_bias, layer.depthwise_use_bias) == (conv.use_bias, False)
    assert (layer.strides, layer.padding, layer.dilation_rate) == (conv.strides, conv.padding, conv.dilation_rate)
    assert layer.data_format == conv.data_format and layer.activation is conv.activation
    assert relative_error(reference, new_model(x)) < 1e-4
    assert report.layers[0].energy == pytest.approx(1.0)
    assert cannot_run or report.layers[0].output_error < 1e-4


def test_truncation_error_is_the_discarded_singular_values(rng):
    conv = keras.layers.Conv2D(6, 3, padding="same")
    model = single_conv(conv, (8, 8, 4), rng)
    kernel = numpy(conv.kernel)
    singular = slice_singular_values(kernel)
    errors = []
    for rank in range(1, 7):
        new_model, report = convert(model, rank=rank, calibration=None)
        error = np.linalg.norm(reconstruct(new_model.layers[0]) - kernel)
        discarded = math.sqrt(sum(np.sum(s[rank:] ** 2) for s in singular))
        assert error == pytest.approx(discarded, rel=1e-4, abs=1e-5)
        row = report.layers[0]
        assert row.rank == rank and row.full_rank == 6
        assert row.kernel_error == pytest.approx(discarded / np.linalg.norm(kernel), rel=1e-6, abs=1e-9)
        errors.append(error)
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-5 * np.linalg.norm(kernel)


@pytest.mark.parametrize("shape", [(3, 3, 4, 5), (3, 3, 2, 16), (5, 3, 7), (2, 2, 2, 3, 4)])
def test_factorize_ranks_are_best_approximations(shape, rng):
    kernel = rng.normal(size=shape)
    singular = slice_singular_values(kernel)
    full = min(math.prod(kernel.shape[:-2]), kernel.shape[-1])
    for rank in range(1, full + 1):
        depthwise, pointwise = factorize(kernel, rank)
        assert depthwise.shape == kernel.shape[:-1] + (rank,)
        assert pointwise.shape == (1,) * (kernel.ndim - 2) + (kernel.shape[-2] * rank, kernel.shape[-1])
        channels = kernel.shape[-2]
        rebuilt = np.einsum("...cm,cmf->...cf", depthwise, pointwise.reshape(channels, rank, -1))
        discarded = math.sqrt(sum(np.sum(s[rank:] ** 2) for s in singular))
        assert np.linalg.norm(rebuilt - kernel) == pytest.approx(discarded, rel=1e-9, abs=1e-12)


def test_rank_is_clipped_to_the_full_rank_and_says_so(rng):
    model = single_conv(keras.layers.Conv2D(4, 3, name="narrow"), (6, 6, 2), rng)
    new_model, report = convert(model, rank=100)
    assert new_model.layers[0].depth_multiplier == 4
    assert report.layers[0].notes == ("rank 100 clipped to the full rank 4 (exact)",)


def test_energy_picks_the_smallest_rank_keeping_that_fraction(rng):
    conv = keras.layers.Conv2D(9, 3)
    model = single_conv(conv, (7, 7, 3), rng)
    squares = sum(s**2 for s in slice_singular_values(conv.kernel))  # pooled over channels
    kept = np.cumsum(squares) / squares.sum()
    for energy in (0.3, 0.6, 0.9, 1.0):
        _, report = convert(model, energy=energy, calibration=None)
        rank = report.layers[0].rank
        assert kept[rank - 1] >= energy - 1e-9
        assert rank == 1 or kept[rank - 2] < energy
        assert report.layers[0].energy == pytest.approx(kept[rank - 1])
    assert report.layers[0].rank == 9  # energy=1.0 keeps everything


def branchy_model(rng):
    """Branches, a residual add, a concatenation, nested models (with and without Input), a shared layer."""
    inner_in = keras.Input((8, 8, 6))
    inner_out = keras.layers.Conv2D(6, 3, padding="same", name="inner_conv")(inner_in)
    inner_functional = keras.Model(inner_in, inner_out, name="inner_functional")
    inner_sequential = keras.Sequential(  # no Input: built when first called
        [
            keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="seq_conv"),
            keras.layers.ReLU(name="seq_relu"),
        ],
        name="inner_sequential",
    )
    shared = keras.layers.Conv2D(6, 3, padding="same", name="shared")
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", name="stem")(inputs)
    a = shared(x)
    b = inner_functional(x)
    x = keras.layers.Add(name="residual")([x, a, b])
    x = shared(x)
    c = inner_sequential(x)
    d = keras.layers.Conv2D(4, 1, name="project")(x)
    x = keras.layers.Concatenate(name="concat")([c, d])
    outputs = keras.layers.Conv2D(3, 3, strides=2, name="head")(x)
    return randomize(keras.Model(inputs, outputs, name="branchy"), rng)


def test_graphs_with_branches_nesting_and_sharing_convert_exactly(rng):
    model = branchy_model(rng)
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    before = numpy(model(x))
    new_model, report = convert(model)
    assert [row.name for row in report.layers] == [
        "stem",
        "shared",
        "inner_functional/inner_conv",
        "inner_sequential/seq_conv",
        "head",
    ]
    assert relative_error(before, new_model(x)) < 1e-4
    np.testing.assert_array_equal(numpy(model(x)), before)  # the original is untouched
    assert type(model.get_layer("stem")) is keras.layers.Conv2D
    assert type(new_model.get_layer("inner_sequential").layers[0]) is DepthwiseSeparableConv2D
    # The shared layer stays shared: one new layer, two calls, MACs of both calls.
    shared_row = report.layers[1]
    assert shared_row.macs_before == 2 * 9 * 6 * 6 * 64
    assert sum(1 for layer in new_model.layers if layer.name == "shared") == 1


def test_reduction_totals_match_the_layer_rows(rng):
    model = branchy_model(rng)
    _, report = convert(model, rank=1, calibration=None)
    params_saved = sum(row.params_before - row.params_after for row in report.layers)
    macs_saved = sum(row.macs_before - row.macs_after for row in report.layers)
    assert report.params_before - report.params_after == params_saved > 0
    assert report.macs_before - report.macs_after == macs_saved > 0
    # Rank-1 layer: K*C + C*F (+ F bias) parameters, per the Network Decoupling factors.
    stem = report.layers[0]
    assert stem.params_after == 9 * 3 + 3 * 6 + 6


class Block(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same", name="hidden_conv")

    def call(self, x):
        return self.conv(x)


class CustomConv(keras.layers.Conv2D):
    pass


def model_with_every_kind_of_convolution():
    inputs = keras.Input((8, 8, 4))
    outputs = [
        keras.layers.Conv2D(4, 3, padding="same", name="plain")(inputs),
        keras.layers.Conv2D(4, 1, name="pointwise")(inputs),
        keras.layers.Conv2D(4, 3, padding="same", groups=2, name="grouped")(inputs),
        keras.layers.Conv2DTranspose(4, 3, padding="same", name="transposed")(inputs),
        keras.layers.SeparableConv2D(4, 3, padding="same", name="keras_separable")(inputs),
        DepthwiseSeparableConv2D(4, 3, padding="same", name="sepconv_separable")(inputs),
        keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(inputs),
        CustomConv(4, 3, padding="same", name="custom")(inputs),
        Block(name="block")(inputs),
    ]
    volume = keras.layers.Reshape((8, 8, 4, 1), name="volume")(inputs)
    volume = keras.layers.Conv3D(1, 3, padding="same", name="conv3d")(volume)
    outputs.append(keras.layers.Reshape((8, 8, 4), name="flat")(volume))
    return keras.Model(inputs, keras.layers.Concatenate()(outputs))


def test_layers_left_alone_are_listed_with_the_reason():
    model = model_with_every_kind_of_convolution()
    _, report = convert(model)
    assert [row.name for row in report.layers] == ["plain"]
    assert {row.name: (row.class_name, row.reason) for row in report.skipped} == {
        "pointwise": ("Conv2D", "1x1 kernel: already a pointwise convolution"),
        "grouped": ("Conv2D", "grouped convolution (groups=2)"),
        "transposed": ("Conv2DTranspose", "transposed convolution"),
        "keras_separable": ("SeparableConv2D", "already depthwise separable"),
        "sepconv_separable": ("DepthwiseSeparableConv2D", "already depthwise separable"),
        "depthwise": ("DepthwiseConv2D", "depthwise convolution: already one filter per channel"),
        "custom": ("CustomConv", "subclass of Conv2D: its call() may differ"),
        "block/hidden_conv": ("Conv2D", "inside Block 'block', which is not a Functional or Sequential model"),
        "conv3d": ("Conv3D", "Conv3D is not supported (Conv1D and Conv2D only)"),
    }


def test_include_and_exclude_patterns(rng):
    model = branchy_model(rng)
    _, report = convert(model, include=["inner_*/*", "head"], exclude="*seq*", calibration=None)
    assert [row.name for row in report.layers] == ["inner_functional/inner_conv", "head"]
    reasons = {row.name: row.reason for row in report.skipped}
    assert reasons["stem"] == "not matched by include=['inner_*/*', 'head']"
    assert reasons["inner_sequential/seq_conv"] == "excluded by exclude pattern '*seq*'"
    everything_excluded = "^Nothing to convert: .* Skipped: 'stem': excluded by exclude pattern 'Conv2D';"
    with pytest.raises(ValueError, match=everything_excluded):
        convert(model, exclude=["Conv2D"])  # a class name

def test_errors_are_pinned(rng):
    model = branchy_model(rng)
    cases = [
        (dict(rank=0), ValueError, "rank must be positive. Received: rank=0"),
        (dict(rank=2.5), TypeError, "rank must be an integer. Received: rank=2.5"),
        (dict(energy=0), ValueError, "energy must be a number in (0, 1]. Received: energy=0"),
        (dict(energy=1.5), ValueError, "energy must be a number in (0, 1]. Received: energy=1.5"),
        (dict(budget=2), ValueError, "budget must be a number in (0, 1]. Received: budget=2"),
        (
            dict(rank=2, energy=0.9),
            ValueError,
            "Pass at most one of rank, energy, budget. Received: rank=2, energy=0.9",
        ),
        (
            dict(budget=0.5, budget_metric="flops"),
            ValueError,
            "budget_metric must be one of 'params', 'macs'. Received: budget_metric='flops'",
        ),
        (
            dict(include="nope*"),
            ValueError,
            "include pattern 'nope*' matches no layer name, path or class of model 'branchy'. "
            "Received: include='nope*'",
        ),
        (dict(include=3), TypeError, "include must be a string or a list of strings. Received: include=3"),
        (
            dict(calibration="bogus"),
            ValueError,
            "calibration must be \"random\", None or model inputs. Received: calibration='bogus'",
        ),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=f"^{re.escape(message)}$"):
            convert(model, **kwargs)
    unmet = r"^budget cannot be met: at rank 1 in every converted layer the model keeps 0\.\d{4} of its params\. "
    with pytest.raises(ValueError, match=unmet + r"Received: budget=0\.01$"):
        convert(model, budget=0.01)


def test_nothing_to_convert_raises():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="only_pointwise")(inputs), name="tiny")
    with pytest.raises(ValueError, match=(
        r"^Nothing to convert: no Conv1D/Conv2D layer with groups=1 and a kernel larger than 1x1 is selected\. "
        r"Skipped: 'only_pointwise': 1x1 kernel: already a pointwise convolution\. Received: model=tiny$"
    )):
        convert(model)
    with pytest.raises(TypeError, match="^model must be a Functional or Sequential Keras model"):
        convert(Block())


def test_unknown_spatial_size_converts_without_macs_or_random_calibration(rng):
    inputs = keras.Input((None, None, 3))
    model = randomize(keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs), name="any_size"), rng)
    new_model, report = convert(model)
    x = rng.normal(size=(2, 7, 9, 3)).astype("float32")
    assert relative_error(model(x), new_model(x)) < 1e-4
    assert (report.macs_before, report.macs_after, report.layers[0].macs_after) == (None, None, None)
    assert report.params_after == report.layers[0].params_after == 3 * 9 * 4 + 3 * 4 * 4 + 4
    assert report.calibration.startswith("not measured: the model's inputs [(None, None, None, 3)]")
    with pytest.raises(ValueError, match=(
        r"^budget on MACs needs a model whose shapes are known \(the model's input shapes "
        r"\[\(None, None, None, 3\)\] have unknown dimensions besides the batch\)\. Received: budget=0.5$"
    )):
        convert(model, budget=0.5, budget_metric="macs")
    unbuilt = keras.Sequential([keras.layers.Conv2D(4, 3)], name="unbuilt")
    unbuilt_message = "model must be built (with weights) before converting. Received: model=unbuilt"
    with pytest.raises(ValueError, match=f"^{re.escape(unbuilt_message)}$"):
        convert(unbuilt)


def test_budget_is_met_and_no_further_rank_step_fits(rng):
    model = branchy_model(rng)
    for metric in ("params", "macs"):
        _, report = convert(model, budget=0.6, budget_metric=metric, calibration=None)
        before = report.params_before if metric == "params" else report.macs_before
        after = report.params_after if metric == "params" else report.macs_after
        assert after <= 0.6 * before
        for row in report.layers:
            if row.rank == row.full_rank:
                continue
            # One more rank adds a k-tap depthwise filter and an F-wide pointwise row per input channel.
            step = row.in_channels * (math.prod(row.kernel_size) + row.filters)
            if metric == "macs":
                positions = row.macs_before // (math.prod(row.kernel_size) * row.in_channels * row.filters)
                step *= positions  # summed over calls
            assert after + step > 0.6 * before


def test_calibration_data_gives_each_layer_its_error(rng):
    model = branchy_model(rng)
    data = rng.normal(size=(5, 8, 8, 3)).astype("float32")
    _, report = convert(model, rank=2, calibration=data, calibration_batch_size=2)
    assert report.calibration == "5 samples given"
    assert all(0 < row.output_error < 1.5 for row in report.layers)
    _, exact = convert(model, calibration=data)
    assert all(row.output_error < 1e-5 for row in exact.layers)
    message = "calibration must hold the same positive number of samples in every input. Received: calibration sizes="
    with pytest.raises(ValueError, match=f"^{re.escape(message)}\\[0\\]$"):
        convert(model, calibration=data[:0])


def test_a_converted_model_saves_and_loads_with_identical_outputs(tmp_path, rng):
    model = branchy_model(rng)
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    new_model, _ = convert(model, rank=3, calibration=None)
    path = str(tmp_path / "converted.keras")
    new_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(new_model(x)))


def test_report_renders_and_serializes(rng):
    _, report = convert(model_with_every_kind_of_convolution(), rank=2, calibration=None)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["rule"] == "rank=2" and data["layers"][0]["name"] == "plain"
    assert data["calibration"] == "not measured (calibration=None)" and data["layers"][0]["output_error"] is None
    assert len(data["skipped"]) == 9
    console = Console(file=io.StringIO(), width=200)
    console.print(render_report(report))
    text = console.file.getvalue()
    assert "plain" in text and "grouped convolution (groups=2)" in text


def test_finetune_trains_a_converted_model(rng):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    new_model, _ = convert(model, rank=2, calibration=None)
    images = rng.integers(0, 256, size=(16, 8, 8, 3), dtype=np.uint8)
    train = Batches(images, rng.integers(0, 3, size=16), batch_size=8, seed=0)
    history = finetune(new_model, train, epochs=2, learning_rate=1e-3, verbose=0)
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    with pytest.raises(ValueError, match=r"^learning_rate must be a number in \(0, inf\)\. Received: learning_rate=0$"):
        finetune(new_model, train, learning_rate=0)


APPLICATIONS = [
    ("VGG16", (64, 64, 3)),
    ("ResNet50", (64, 64, 3)),
    ("Xception", (75, 75, 3)),
    ("MobileNet", (64, 64, 3)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, input_shape", APPLICATIONS)
def test_keras_applications_convert_and_shrink(name, input_shape, rng):
    model = getattr(keras.applications, name)(weights=None, include_top=False, input_shape=input_shape, pooling="avg")
    new_model, report = convert(model, rank=1)
    x = rng.normal(size=(1, *input_shape)).astype("float32")
    assert numpy(new_model(x)).shape == numpy(model(x)).shape
    assert report.layers and all(row.rank == 1 for row in report.layers)
    assert report.params_after < report.params_before and report.macs_after < report.macs_before
