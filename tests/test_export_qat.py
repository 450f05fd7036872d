"""Quantization-aware fine-tuning for int8 (`sepconv.export.finetune_for_int8`).

References: numpy for the rounding of weights and activations, the original Keras model for
the simulation with rounding off, and the int8 ONNX file ONNX Runtime's own quantizer writes
(its scales and outputs) for where and how the simulation rounds.
"""

import keras
import numpy as np
import pytest
from helpers import BACKEND
from test_export import SHAPE, model, needs_litert, needs_onnx  # noqa: F401 (`model`: the fixture, a tiny model with every BN kind)

from sepconv.cli import main
from sepconv.export import (
    ActivationQuantizer,
    SimulatedInt8,
    export_model,
    finetune_for_int8,
    fold_batch_norm,
    open_runtime,
)
from sepconv.export._qat import quantize_weight
from sepconv.layers import presets


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).standard_normal((48, *SHAPE)).astype("float32")


@pytest.fixture(scope="module")
def simulation(model, images):
    simulation = SimulatedInt8(model)
    simulation.calibrate(images, batch_size=len(images))  # one compiled shape
    return simulation


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_weights_round_to_int8_per_output_channel(rng):
    kernel = rng.normal(0, 0.3, (3, 3, 4, 2)).astype("float32")  # depthwise: (kh, kw, C, M)
    got = _numpy(quantize_weight(keras.ops.convert_to_tensor(kernel), (2, 3)))
    scale = np.abs(kernel).max(axis=(0, 1), keepdims=True) / 127
    np.testing.assert_allclose(got, np.round(kernel / scale) * scale, rtol=0, atol=1e-7)
    assert len(np.unique(np.round(got / scale))) <= 255  # on the int8 grid


def test_activation_rounding_matches_uint8_quantize_dequantize(rng):
    x = rng.normal(0.5, 2.0, (4, 50)).astype("float32")
    quantizer = ActivationQuantizer()
    quantizer.build(x.shape)
    quantizer.minimum.assign(0.3)  # the range is widened to hold 0
    quantizer.maximum.assign(2.5)
    got = _numpy(quantizer(x))
    scale = 2.5 / 255  # [0, 2.5] over 255 steps, zero point 0
    expected = np.clip(np.round(x / scale), 0, 255) * scale
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got.min() == 0 and got.max() <= 2.5 + 1e-6


def test_simulation_without_rounding_is_the_model(model, images, simulation):
    expected = _numpy(model(images))
    simulation.set_enabled(False)
    try:
        np.testing.assert_allclose(_numpy(simulation.simulated(images)), expected, atol=1e-5)
    finally:
        simulation.set_enabled(True)
    assert 0 < np.abs(_numpy(simulation.simulated(images)) - expected).max() < 0.2
    # Input, stem ReLU, the two separable layers' middles and outputs (mobile, xcept), proj,
    # Add+ReLU, plain's middle and output, head logits, softmax: max-pool and flatten keep the grid.
    assert len(simulation.quantizers) == 12 and simulation.ends_in_softmax


@needs_onnx
@pytest.mark.skipif(BACKEND != "tensorflow", reason="ONNX Runtime's quantizer reads the tf2onnx file")
def test_simulation_rounds_where_onnx_runtime_does(model, images, simulation, tmp_path):
    import onnx
    from onnx import numpy_helper

    path = str(tmp_path / "m-int8.onnx")
    export_model(model, path, quantize="int8", calibration=images)
    graph = onnx.load(path).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    scales = sorted(
        float(constants[n.input[1]]) for n in graph.node
        if n.op_type == "QuantizeLinear" and n.input[1] in constants and constants[n.input[1]].ndim == 0
        and n.input[0] not in constants
    )  # fmt: skip
    ours = sorted(
        (max(float(q.maximum), 0) - min(float(q.minimum), 0)) / 255 for q in simulation.quantizers
    )
    # ONNX Runtime repeats a scale where an operator keeps its input's grid (max-pool, reshape).
    np.testing.assert_allclose(sorted(set(np.round(scales, 7))), sorted(set(np.round(ours, 7))), rtol=1e-5)
    got = open_runtime(path)(images)
    assert np.abs(got - _numpy(simulation.simulated(images))).max() <= 3 / 255 + 1e-6


@needs_onnx
@pytest.mark.skipif(BACKEND != "tensorflow", reason="ONNX Runtime's quantizer reads the tf2onnx file")
def test_percentile_ranges_and_16_bit_activations_are_simulated_as_onnx_runtime_writes_them(model, images, tmp_path):
    from test_export import _activation_quantizers

    path = str(tmp_path / "m-int8.onnx")
    settings = {"calibration_method": "percentile", "percentile": 99.0, "int16_activations": 2}
    export_model(model, path, quantize="int8", calibration=images, **settings)
    written = _activation_quantizers(path)
    simulation = SimulatedInt8(model, int16_activations=2)
    simulation.calibrate(images, batch_size=len(images), method="percentile", percentile=99.0)
    levels = [q.levels for q in simulation.quantizers]
    assert levels[:3] == [65535, 65535, 255] and [z.dtype.name for _, _, z in written[:3]] == ["uint16"] * 2 + ["uint8"]
    ours = [(max(float(q.maximum), 0) - min(float(q.minimum), 0)) / q.levels for q in simulation.quantizers]
    # The first two in graph order are the input and the stem's output, 16 bits in both.
    np.testing.assert_allclose([scale for _, scale, _ in written[:2]], ours[:2], rtol=5e-3)
    # ONNX Runtime repeats a scale where an operator keeps its input's grid; histogram bins differ slightly.
    theirs = sorted(set(scale for _, scale, _ in written))
    np.testing.assert_allclose(theirs, sorted(ours), rtol=5e-3)


@needs_litert
def test_percentile_ranges_are_simulated_as_litert_writes_them(model, images, tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils as fb

    path = str(tmp_path / "m-int8.tflite")
    export_model(model, path, quantize="int8", calibration=images, calibration_method="percentile", percentile=99.0)
    file = fb.read_model(path)
    written = set()
    for tensor in file.subgraphs[0].tensors:  # int8 activations: one scale, no constant data
        constant = tensor.buffer > 0 and file.buffers[tensor.buffer].data is not None
        if fb.type_to_name(tensor.type) == "INT8" and len(tensor.quantization.scale) == 1 and not constant:
            written.add(round(float(tensor.quantization.scale[0]), 7))
    simulation = SimulatedInt8(model)
    simulation.calibrate(images, batch_size=len(images), method="percentile", percentile=99.0)
    ours = {(max(float(q.maximum), 0) - min(float(q.minimum), 0)) / 255 for q in simulation.quantizers}
    minmax = SimulatedInt8(model)
    minmax.calibrate(images, batch_size=len(images))
    # LiteRT's softmax output has its fixed grid (1/256); every other rounded tensor is the simulation's.
    for scale in ours - {1 / 255}:
        assert min(abs(scale - w) for w in written) <= 5e-3 * scale, scale
    assert {(max(float(q.maximum), 0) - min(float(q.minimum), 0)) / 255 for q in minmax.quantizers} != ours


@needs_litert
def test_float_ops_are_simulated_as_litert_writes_them(model, images, tmp_path):
    path = str(tmp_path / "m-int8.tflite")
    export_model(model, path, quantize="int8", calibration=images, float_ops=3)
    got = open_runtime(path)(images)
    simulations = {n: SimulatedInt8(model, float_ops=n) for n in (0, 3)}
    for simulation in simulations.values():
        simulation.calibrate(images, batch_size=len(images))
    assert len(simulations[3].quantizers) < len(simulations[0].quantizers)  # the float32 region rounds less
    gaps = {n: np.abs(got - _numpy(s.simulated(images))).max() for n, s in simulations.items()}
    # Rounding in the same places, the file and the simulation differ by a few levels; rounding the
    # three float32 operators too, by more.
    assert gaps[3] <= 3 / 255 + 1e-6 and gaps[0] > gaps[3]
    steps = [layer for layer in simulations[3].simulated.layers if layer.name.endswith(("_int8", "_float32"))]
    assert [layer.rounded for layer in steps[:4]] == [False, False, False, True]
    # Every convolution and dense operator in float32 (the file's count): the add and the pooling
    # among them stay float32 in both, the softmax after the head is rounded in both.
    path = str(tmp_path / "m-all.tflite")
    export_model(model, path, quantize="int8", calibration=images, float_ops=len(steps))
    every = SimulatedInt8(model, float_ops=len(steps))
    every.calibrate(images, batch_size=len(images))
    assert len(every.quantizers) == 2  # before the softmax and after it
    assert np.abs(open_runtime(path)(images) - _numpy(every.simulated(images))).max() <= 3 / 255 + 1e-6


def test_finetuning_trains_the_folded_float_model_it_exports(model, images):
    before = [w.copy() for w in model.get_weights()]
    keras.utils.set_random_seed(0)
    tuned = finetune_for_int8(model, images, images[:16], epochs=1, learning_rate=0.05, batch_size=16, verbose=0)
    for old, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, now)  # the input model is untouched
    untuned = fold_batch_norm(model)[0].get_weights()
    tuned_weights = tuned.float_model.get_weights()
    assert len(tuned_weights) == len(untuned) and len(tuned.float_model.layers) < len(model.layers)
    assert any(not np.allclose(a, b) for a, b in zip(untuned, tuned_weights))
    history = tuned.logits.history.history["loss"]
    assert len(history) == 1 and np.isfinite(history[0])
    # The simulation computes with the float model's variables: rounding off, they agree.
    tuned.set_enabled(False)
    np.testing.assert_allclose(
        _numpy(tuned.simulated(images)), _numpy(tuned.float_model(images)), atol=1e-5
    )


def test_unsupported_layers_are_refused():
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(ValueError) as error:
        SimulatedInt8(model)
    assert str(error.value) == (
        "Quantization-aware fine-tuning supports convolutions (regular, depthwise, separable) and Dense layers "
        "after BatchNorm folding. Received: layer 'norm' of type LayerNormalization"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be positive. Received: epochs=0"),
        ({"learning_rate": 0.0}, "learning_rate must be a number in (0, inf). Received: learning_rate=0.0"),
        ({"images": np.zeros((4, 5, 5, 3), "float32")},
         "images must be images shaped like the model's input (Nx8x8x3). Received: images.shape=(4, 5, 5, 3)"),
        ({"calibration_method": "mean"},
         "calibration_method must be one of 'minmax', 'percentile'. Received: calibration_method='mean'"),
        ({"int16_activations": -1}, "int16_activations must be non-negative. Received: int16_activations=-1"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_errors(model, images, kwargs, message):
    arguments = {"images": images, "calibration": images, **kwargs}
    with pytest.raises(ValueError) as error:
        finetune_for_int8(model, arguments.pop("images"), arguments.pop("calibration"), **arguments)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--qat-epochs", "1"], "--qat-epochs is used only with --quantize int8. Received: --quantize=none"),
        (["--quantize", "int8", "--calibration-data", "CAL", "--qat-epochs", "2"],
         "--qat-epochs needs training images: --data PATH (CIFAR-10). Received: --qat-epochs=2"),
    ],
)  # fmt: skip
def test_cli_refuses_qat_without_int8_or_data(model, images, tmp_path, capsys, argv, message):
    source, calibration = str(tmp_path / "m.keras"), str(tmp_path / "cal.npy")
    model.save(source)
    np.save(calibration, images)
    argv = [calibration if a == "CAL" else a for a in argv]
    assert main(["export", source, str(tmp_path / "m.onnx"), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"sepconv export: error: {message}"
    assert not (tmp_path / "m.onnx").exists()


@needs_onnx
@pytest.mark.skipif(BACKEND != "tensorflow", reason="one backend is enough for the command's plumbing")
def test_cli_fine_tunes_exports_and_reports_json(tmp_path, capsys):
    import json

    from helpers import image_folder_archive

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = presets.mobilenet(16, 3, padding="same", strides=2)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    source = str(tmp_path / "m.keras")
    keras.Model(inputs, outputs).save(source)
    data = image_folder_archive(tmp_path / "data.tar.gz")
    argv = ["export", source, str(tmp_path / "m.onnx"), "--quantize", "int8", "--data", data, "--calibration-size",
            "8", "--qat-epochs", "1", "--qat-learning-rate", "0.01", "--json"]  # fmt: skip
    assert main(argv) in (0, 1)  # 9 test images: the agreement criterion may go either way
    result = json.loads(capsys.readouterr().out)  # nothing but the JSON on stdout
    qat = result["qat"]
    assert qat["epochs"] == 1 and qat["images"] == 18 and np.isfinite(qat["loss"][0])
    assert 0 <= qat["simulation_agreement"] <= 1 and result["check"]["samples"] == 9
    assert result["export"]["batch_norm"] == {"folded": 3, "left": 0}  # stem BN, the preset's two
