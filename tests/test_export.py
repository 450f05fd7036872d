"""`sepconv.export` and `sepconv export`: folding, export paths, ONNX/LiteRT files, errors.

Folding and the export paths run on every backend, checked against Keras' own
(unfolded) model and the numpy references. Writing files needs the `export` extra;
ONNX is written from TensorFlow and PyTorch (JAX needs jax2onnx, not in the extra),
LiteRT and int8 LiteRT from TensorFlow: elsewhere those tests skip and say why. The
exported files are compared with Keras' outputs, run in ONNX Runtime and LiteRT.
"""

import collections
import importlib.util
import json
import os

import keras
import numpy as np
import pytest
import reference
from helpers import BACKEND

import sepconv
from sepconv import kernels
from sepconv.cli import main
from sepconv.export import (
    MissingPackageError,
    batch_norm_affine,
    check_export,
    export_model,
    float32_model,
    fold_batch_norm,
    open_runtime,
)
from sepconv.export import _formats
from sepconv.layers import presets

SHAPE = (8, 8, 3)
HAS_EXTRA = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "ai_edge_litert"))
ONNX_HERE = HAS_EXTRA and (BACKEND == "torch" or (BACKEND == "tensorflow" and importlib.util.find_spec("tf2onnx")))
needs_onnx = pytest.mark.skipif(not ONNX_HERE, reason=f"ONNX export is tested from tensorflow and torch with the "
                                f"export extra installed (backend {BACKEND}, extra installed: {HAS_EXTRA})")  # fmt: skip
needs_litert = pytest.mark.skipif(
    not (HAS_EXTRA and BACKEND == "tensorflow"), reason="LiteRT export is tested from tensorflow with the export extra"
)


def _randomize_batch_norms(model, rng):
    """Moving statistics and affine parameters far from their initial values, so folding matters."""
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, n).astype("float32"))
    return model


def tiny_model(seed=0):
    """Every foldable arrangement: Conv2D -> BN stem, MobileNet and Xception presets, a
    projection shortcut (Conv2D 1x1 -> BN) into an Add, plain separable, pooling, dense."""
    inputs = keras.Input(SHAPE, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = sepconv.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    y = presets.mobilenet(16, 3, padding="same", strides=2, name="mobile")(x)
    y = presets.xception(16, 3, padding="same", name="xcept")(y)
    shortcut = keras.layers.Conv2D(16, 1, strides=2, use_bias=False, name="proj")(x)
    shortcut = keras.layers.BatchNormalization(name="proj_bn")(shortcut)
    x = keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))
    x = presets.keras_style(24, 3, padding="same", activation="relu", name="plain")(x)
    x = sepconv.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    return _randomize_batch_norms(model, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return tiny_model()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).standard_normal((24, *SHAPE)).astype("float32")


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


# --- folding (every backend) --------------------------------------------------------------------


def test_batch_norm_affine_matches_keras_inference(rng):
    layer = keras.layers.BatchNormalization(epsilon=1e-3)
    layer.build((None, 6))
    _randomize_batch_norms(keras.Sequential([keras.Input((6,)), layer]), rng)
    x = rng.standard_normal((4, 6)).astype("float32")
    s, t = batch_norm_affine(layer)
    np.testing.assert_allclose(x * s + t, _predict(layer, x), rtol=1e-5, atol=1e-5)


def test_folding_removes_every_foldable_batch_norm_and_keeps_the_outputs(model, images):
    folded, counts = fold_batch_norm(model)
    assert counts == {"folded": 5, "left": 0}  # stem_bn, mobile (2), xcept, proj_bn
    names = [type(layer).__name__ for layer in folded._flatten_layers()]
    assert "BatchNormalization" not in names
    mobile = folded.get_layer("mobile")
    assert (mobile.depthwise_norm, mobile.norm, mobile.depthwise_use_bias, mobile.use_bias) == (None, None, True, True)
    assert folded.get_layer("stem").use_bias and folded.get_layer("proj").use_bias
    # Independent reference: Keras' inference of the unfolded model.
    np.testing.assert_allclose(_predict(folded, images), _predict(model, images), rtol=1e-5, atol=1e-6)
    assert len(model.get_layer("mobile").weights) > len(mobile.weights)  # the original is untouched


def test_folding_a_batch_norm_after_a_separable_layer(images):
    """As `sepconv convert` leaves a Conv2D -> BN step: a separable layer, then a BN layer."""
    inputs = keras.Input(SHAPE)
    x = sepconv.DepthwiseSeparableConv2D(8, 3, padding="same", use_bias=False, name="plain")(inputs)
    x = keras.layers.BatchNormalization(name="plain_bn")(x)
    x = keras.layers.ReLU()(x)
    x = sepconv.DepthwiseSeparableConv2D(6, 3, depthwise_normalization="batch", depthwise_activation="relu",
                                         name="middle")(x)  # fmt: skip
    x = sepconv.layers.BatchNormalization(name="middle_bn")(x)
    x = presets.mobilenet(4, 3, activation=None, name="own")(x)  # its own BN after the pointwise step
    x = keras.layers.BatchNormalization(name="after_own")(x)  # not foldable into it: another affine map
    model = _randomize_batch_norms(keras.Model(inputs, x), np.random.default_rng(3))
    folded, counts = fold_batch_norm(model)
    assert counts == {"folded": 5, "left": 1}  # plain_bn, middle (its own and middle_bn), own (2); after_own left
    plain, middle = folded.get_layer("plain"), folded.get_layer("middle")
    assert plain.use_bias and middle.use_bias and middle.depthwise_norm is None
    assert [type(layer).__name__ for layer in folded.layers].count("BatchNormalization") == 1
    np.testing.assert_allclose(_predict(folded, images), _predict(model, images), rtol=1e-5, atol=1e-5)


def test_folding_leaves_a_batch_norm_after_an_activation():
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, x)
    _randomize_batch_norms(model, np.random.default_rng(0))
    folded, counts = fold_batch_norm(model)
    assert counts == {"folded": 0, "left": 1}
    x = np.random.default_rng(2).standard_normal((2, *SHAPE)).astype("float32")
    np.testing.assert_allclose(_predict(folded, x), _predict(model, x), rtol=1e-5, atol=1e-6)


def _mixed_precision_copy(model):
    """`tiny_model` built under `mixed_bfloat16`, with `model`'s weights."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = tiny_model()
    finally:
        keras.config.set_dtype_policy("float32")
    mixed.set_weights(model.get_weights())
    return mixed


def test_float32_model_of_a_mixed_precision_model_has_its_weights_in_float32(model, images):
    assert float32_model(model) is model
    mixed = _mixed_precision_copy(model)
    twin = float32_model(mixed)
    assert {layer.dtype_policy.name for layer in twin._flatten_layers(include_self=False)} == {"float32"}
    np.testing.assert_allclose(_predict(twin, images), _predict(model, images), rtol=1e-5, atol=1e-6)
    assert mixed.layers[1].dtype_policy.name == "mixed_bfloat16"  # the original is left as it was


@needs_onnx
def test_a_mixed_precision_model_exports_as_float32_and_checks(model, images, tmp_path):
    """A model trained with --dtype-policy mixed_bfloat16 exports (its 16-bit graph would not load)."""
    mixed = _mixed_precision_copy(model)
    path = str(tmp_path / "mixed.onnx")
    export_model(mixed, path)
    check = check_export(mixed, path, images)
    assert check["passed"] and check["max_abs_diff"] <= 1e-5


def test_fold_rejects_a_non_model():
    with pytest.raises(TypeError, match=r"model must be a Keras model\. Received: model="):
        fold_batch_norm("model.keras")


# --- the export path of the selection point (every backend) ------------------------------------


@pytest.mark.parametrize("strides", [1, 2])
def test_export_paths_compute_the_separable_layer(rng, strides):
    x = rng.standard_normal((2, 7, 7, 4)).astype("float32")
    layer = sepconv.DepthwiseSeparableConv2D(6, 3, strides=strides, padding="same", depth_multiplier=2)
    layer.build(x.shape)
    with kernels.export_paths():
        got = keras.ops.convert_to_numpy(layer(x))
    depthwise, pointwise = (keras.ops.convert_to_numpy(w) for w in (layer.depthwise_kernel, layer.pointwise_kernel))
    middle = reference.depthwise(x, depthwise, (strides,) * 2, "same", (1, 1))
    expected = reference.pointwise(middle, pointwise) + keras.ops.convert_to_numpy(layer.bias)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# --- files (TensorFlow: both formats; PyTorch: ONNX) -------------------------------------------


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """Float files written once for the module: {format: (path, info)}."""
    folder = tmp_path_factory.mktemp("export")
    files = {}
    if ONNX_HERE:
        files["onnx"] = (str(folder / "m.onnx"), export_model(model, str(folder / "m.onnx")))
    if HAS_EXTRA and BACKEND == "tensorflow":
        files["litert"] = (str(folder / "m.tflite"), export_model(model, str(folder / "m.tflite")))
    return files


@needs_onnx
def test_onnx_graph_has_one_depthwise_and_one_1x1_conv_per_layer(exported, model, images):
    import onnx

    path, info = exported["onnx"]
    graph = onnx.load(path).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    groups = [next((a.i for a in n.attribute if a.name == "group"), 1) for n in convs]
    # stem, proj, and per separable layer (3) a depthwise (group = channels) and a 1x1 conv.
    assert sorted(groups) == [1] * 5 + [8, 16, 16]
    ops = collections.Counter(n.op_type for n in graph.node)
    # No normalization left, no per-tap multiply-adds (a shifted 3x3 layer has 9 Muls);
    # torch.onnx adds shape arithmetic for its explicit "same" padding of strided convs.
    assert "BatchNormalization" not in ops and ops["Mul"] < 9
    assert info["batch_norm"] == {"folded": 5, "left": 0}
    check = check_export(model, path, images)
    assert check["passed"] and check["max_abs_diff"] <= 1e-5 and check["top1_agreement"] == 1.0


@needs_litert
def test_litert_graph_uses_builtin_depthwise_ops(exported, model, images):
    path, info = exported["litert"]
    ops = info["ops"]
    assert ops["DEPTHWISE_CONV_2D"] == 3 and ops["CONV_2D"] == 5
    assert not {"MUL", "SUB", "PAD", "DELEGATE"} & set(ops) and not any(op.startswith("Flex") for op in ops)
    # The runtime itself, independently of check_export.
    runtime = open_runtime(path, threads=1)
    np.testing.assert_allclose(runtime(images[:3]), _predict(model, images[:3]), atol=1e-5)
    assert check_export(model, path, images)["passed"]


@needs_litert
@pytest.mark.parametrize("extension", ["onnx", "tflite"])
def test_int8_files_are_quantized_and_close(model, images, tmp_path, extension):
    calibration = np.random.default_rng(3).standard_normal((64, *SHAPE)).astype("float32")
    path = str(tmp_path / f"m.{extension}")
    info = export_model(model, path, quantize="int8", calibration=calibration)
    quantized = {"QuantizeLinear", "DequantizeLinear"} if extension == "onnx" else {"QUANTIZE", "DEQUANTIZE"}
    assert quantized <= set(info["ops"]) and info["calibration_images"] == 64
    check = check_export(model, path, calibration, quantize="int8")
    # Softmax outputs of a random 5-class model: int8 rounding moves them by a few 1e-2 at most.
    assert check["max_abs_diff"] < 0.1 and check["top1_agreement"] >= 0.8
    assert check["criterion"] == "top1_agreement >= 0.99"


def _activation_quantizers(path):
    """`(tensor, scale, zero point)` of each activation QuantizeLinear of an ONNX file, in graph order."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return [(node.input[0], float(constants[node.input[1]]), constants[node.input[2]])
            for node in graph.node if node.op_type == "QuantizeLinear" and node.input[0] not in constants]  # fmt: skip


@needs_onnx
def test_int16_activations_widen_the_first_tensors_only(model, tmp_path):
    calibration = np.random.default_rng(3).standard_normal((64, *SHAPE)).astype("float32")
    files = {n: str(tmp_path / f"m{n}.onnx") for n in (0, 2, 1000)}
    for n, path in files.items():
        info = export_model(model, path, quantize="int8", calibration=calibration, int16_activations=n)
        assert info["int8"] == {"calibration_method": "minmax", "int16_activations": n}
    bits = {n: [zero.dtype.itemsize * 8 for _, _, zero in _activation_quantizers(path)] for n, path in files.items()}
    assert set(bits[0]) == {8} and set(bits[1000]) == {16} and len(bits[2]) == len(bits[0])
    # The first two widen; ONNX Runtime may widen an operator's output that keeps its input's grid too.
    assert bits[2][:2] == [16, 16] and bits[2].count(8) >= len(bits[2]) - 4
    # Against Keras: 16-bit activations leave only the weights' rounding.
    diff = {n: check_export(model, path, calibration, quantize="int8")["max_abs_diff"] for n, path in files.items()}
    assert diff[1000] < diff[0]


@needs_onnx
def test_percentile_calibration_clips_the_input_range_at_that_percentile(model, tmp_path):
    calibration = np.random.default_rng(3).standard_normal((64, *SHAPE)).astype("float32")
    path = str(tmp_path / "m.onnx")
    export_model(model, path, quantize="int8", calibration=calibration, calibration_method="percentile", percentile=99)
    _, scale, zero = _activation_quantizers(path)[0]
    # The input's range is +-(99th percentile of |x|) (numpy's), to a few of the calibrator's 2,048
    # histogram bins (it merges one histogram per calibration batch).
    threshold = np.percentile(np.abs(calibration), 99)
    assert int(zero) == 128 and abs(scale * 255 / 2 - threshold) < 4 * np.abs(calibration).max() / 2048
    assert threshold < np.abs(calibration).max() - 0.5  # so a min-max range would fail the check above


def _litert_tensors(path):
    """`(operator, output type, output scale or None)` per operator of a LiteRT file, in graph order."""
    from tensorflow.lite.tools import flatbuffer_utils as fb

    model = fb.read_model(path)
    graph = model.subgraphs[0]
    rows = []
    for op in graph.operators:
        tensor = graph.tensors[op.outputs[0]]
        scale = tensor.quantization.scale if tensor.quantization is not None else None
        rows.append((fb.opcode_to_name(model, op.opcodeIndex), fb.type_to_name(tensor.type),
                     None if scale is None or len(scale) == 0 else float(scale[0])))  # fmt: skip
    return rows


@needs_litert
def test_litert_percentile_calibration_clips_the_input_range_at_that_percentile(model, tmp_path):
    calibration = np.random.default_rng(3).standard_normal((64, *SHAPE)).astype("float32")
    files = {method: str(tmp_path / f"{method}.tflite") for method in ("minmax", "percentile")}
    for method, path in files.items():
        info = export_model(model, path, quantize="int8", calibration=calibration, calibration_method=method,
                            percentile=99)  # fmt: skip
        assert info["int8"]["calibration_method"] == method and info["int8"]["float_ops"] == 0
    (op, kind, scale), *_ = _litert_tensors(files["percentile"])
    # The input's int8 range is +-(99th percentile of |x|) (numpy's): 255 steps of 2t/255, to a few of the
    # 2,048 histogram bins (the quantizer also nudges the range so that 0 falls on the grid).
    threshold = np.percentile(np.abs(calibration), 99)
    assert (op, kind) == ("QUANTIZE", "INT8")
    assert abs(scale * 255 / 2 - threshold) < 4 * np.abs(calibration).max() / 2048
    minmax_scale = _litert_tensors(files["minmax"])[0][2]
    assert threshold < np.abs(calibration).max() - 0.5 and minmax_scale > 1.2 * scale  # min-max would fail above
    assert check_export(model, files["percentile"], calibration, quantize="int8")["top1_agreement"] >= 0.8


@needs_litert
def test_litert_float_ops_keep_the_first_operators_in_float32(model, tmp_path):
    calibration = np.random.default_rng(3).standard_normal((64, *SHAPE)).astype("float32")
    kinds = {}
    for n in (0, 1, 2):
        path = str(tmp_path / f"m{n}.tflite")
        info = export_model(model, path, quantize="int8", calibration=calibration, float_ops=n)
        assert info["int8"] == {"calibration_method": "minmax", "float_ops": n}
        kinds[n] = [(op, kind) for op, kind, _ in _litert_tensors(path) if op not in ("QUANTIZE", "DEQUANTIZE")]
        assert check_export(model, path, calibration, quantize="int8")["top1_agreement"] >= 0.8
    computing = [op for op, _ in kinds[0]]  # the same operators in every file, only their types change
    assert all([op for op, _ in kinds[n]] == computing for n in (1, 2))
    assert [kind for _, kind in kinds[0]][:3] == ["INT8"] * 3
    assert [kind for _, kind in kinds[2]][:3] == ["FLOAT32", "FLOAT32", "INT8"]
    assert [kind for _, kind in kinds[1]][1:] == [kind for _, kind in kinds[0]][1:]
    # Counting convolution and dense operators: at the last (the dense head), everything before it is
    # float32 too, the add and the pooling among them; only the softmax after it stays int8.
    linear = [i for i, op in enumerate(computing) if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    path = str(tmp_path / "all.tflite")
    export_model(model, path, quantize="int8", calibration=calibration, float_ops=len(linear))
    kinds_all = [(op, kind) for op, kind, _ in _litert_tensors(path) if op not in ("QUANTIZE", "DEQUANTIZE")]
    assert [op for op, _ in kinds_all] == computing and {"ADD", "MAX_POOL_2D"} <= set(computing[: linear[-1]])
    types = [kind for _, kind in kinds_all]  # (the flatten's shape operators compute in int32)
    assert "INT8" not in types[: linear[-1] + 1] and set(types[linear[-1] + 1 :]) == {"INT8"}
    with pytest.raises(ValueError, match=rf"^float_ops must be at most the model's {len(linear)} convolution and "
                                         r"dense operators\. Received: float_ops=1000$"):  # fmt: skip
        export_model(model, str(tmp_path / "big.tflite"), quantize="int8", calibration=calibration, float_ops=1000)
    assert not os.path.exists(tmp_path / "big.tflite")


def test_format_only_int8_options_are_refused_elsewhere_and_for_float(model, tmp_path):
    calibration = np.zeros((2, *SHAPE), "float32")
    with pytest.raises(ValueError) as error:
        export_model(model, str(tmp_path / "m.tflite"), quantize="int8", calibration=calibration, int16_activations=2)
    assert str(error.value) == (
        "int16_activations other than the default needs an .onnx file: LiteRT cannot mix 8- and 16-bit activations "
        "(float_ops keeps its first operators in float32 instead). Received: int16_activations=2"
    )
    with pytest.raises(ValueError) as error:
        export_model(model, str(tmp_path / "m.onnx"), quantize="int8", calibration=calibration, float_ops=1)
    assert str(error.value) == (
        "float_ops other than the default needs a .tflite file (for ONNX Runtime, int16_activations keeps the first "
        "activations in 16 bits). Received: float_ops=1"
    )
    with pytest.raises(ValueError, match=r"^int16_activations is used only with quantize='int8'\. Received: "
                       r"int16_activations=3$"):  # fmt: skip
        export_model(model, str(tmp_path / "m.onnx"), int16_activations=3)
    with pytest.raises(ValueError, match=r"^calibration_method is used only with quantize='int8'\. Received: "
                       r"calibration_method='percentile'$"):  # fmt: skip
        export_model(model, str(tmp_path / "m.tflite"), calibration_method="percentile")
    with pytest.raises(ValueError, match=r"^percentile must be .* Received: percentile=100\.5$"):
        export_model(model, str(tmp_path / "m.onnx"), quantize="int8", calibration=calibration, percentile=100.5)
    with pytest.raises(ValueError, match=r"^float_ops must be non-negative\. Received: float_ops=-1$"):
        export_model(model, str(tmp_path / "m.tflite"), quantize="int8", calibration=calibration, float_ops=-1)
    assert os.listdir(tmp_path) == []


# --- bad input -------------------------------------------------------------------------------


def test_unknown_extension_is_refused(model, tmp_path):
    with pytest.raises(ValueError, match=r"path must end in \.onnx or \.tflite \(ONNX or LiteRT\)\. Received: path=.*m\.pb$"):
        export_model(model, str(tmp_path / "m.pb"))


@pytest.mark.parametrize(
    "fmt, quantize, backend, message",
    [
        ("litert", "none", "jax", "Keras cannot export litert from the jax backend; it can from tensorflow, torch "
         "(set KERAS_BACKEND). Received: backend='jax', format='litert'"),
        ("litert", "int8", "torch", "Keras cannot export int8 litert from the torch backend; it can from tensorflow "
         "(set KERAS_BACKEND). Received: backend='torch', format='litert'"),
    ],
)  # fmt: skip
def test_a_format_the_backend_cannot_write_is_refused(fmt, quantize, backend, message):
    with pytest.raises(ValueError) as error:
        _formats.check_backend(fmt, quantize, backend)
    assert str(error.value) == message


def test_a_missing_runtime_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name))
    with pytest.raises(MissingPackageError) as error:
        _formats.require(("onnxruntime",), "running onnx files")
    assert str(error.value) == (
        "running onnx files needs onnxruntime: pip install 'sepconv[export]'. Received: missing=['onnxruntime']"
    )
    with pytest.raises(MissingPackageError, match=r"needs litert-torch: pip install litert-torch\. "):
        _formats.require(("litert_torch",), "litert export from torch")


@pytest.mark.skipif(BACKEND != "jax" or not HAS_EXTRA, reason="JAX without jax2onnx (not in the export extra) refuses ONNX")
def test_onnx_from_jax_names_jax2onnx(model, tmp_path):
    if importlib.util.find_spec("jax2onnx"):
        pytest.skip("jax2onnx is installed here")
    with pytest.raises(MissingPackageError, match=r"onnx export from jax needs jax2onnx: pip install jax2onnx\."):
        export_model(model, str(tmp_path / "m.onnx"))
    assert os.listdir(tmp_path) == []


@needs_litert
def test_calibration_of_the_wrong_shape_is_refused(model, tmp_path):
    with pytest.raises(ValueError) as error:
        export_model(model, str(tmp_path / "m.tflite"), quantize="int8", calibration=np.zeros((4, 32, 32, 3), "float32"))
    assert str(error.value) == (
        "calibration must be images shaped like the model's input (Nx8x8x3). Received: calibration.shape=(4, 32, 32, 3)"
    )
    with pytest.raises(ValueError, match=r"int8 quantization needs calibration images .* Received: calibration=None"):
        export_model(model, str(tmp_path / "m.tflite"), quantize="int8")
    assert os.listdir(tmp_path) == []


@needs_litert
@pytest.mark.parametrize("extension", ["onnx", "tflite"])
def test_a_layer_the_format_cannot_express_leaves_no_file(tmp_path, extension):
    inputs = keras.Input(SHAPE)
    x = keras.layers.Lambda(lambda t: keras.ops.erfinv(keras.ops.tanh(t)))(inputs)  # no ONNX/LiteRT builtin
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)), name="odd")
    fmt = "onnx" if extension == "onnx" else "litert"
    with pytest.raises(ValueError) as error:
        export_model(model, str(tmp_path / f"m.{extension}"))
    assert str(error.value) == (
        f"The model cannot be exported to {fmt}: operators the runtime does not implement: Erfinv. Received: model=odd"
    )
    assert os.listdir(tmp_path) == []


# --- the command ------------------------------------------------------------------------------


@needs_litert
def test_cli_exports_checks_and_reports(model, tmp_path, capsys):
    source = str(tmp_path / "m.keras")
    model.save(source)
    out = str(tmp_path / "m.tflite")
    assert main(["export", source, out, "--output-json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert f"Wrote {out} (litert, none," in printed and "BatchNormalization folded: 5, left: 0" in printed
    assert "on 32 random N(0, 1) inputs" in printed and "passed (max_abs_diff <= 1e-05)" in printed
    assert os.path.isfile(str(tmp_path / "r.json"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["MODEL", "out.pb"], "sepconv export: error: OUT must end in .onnx or .tflite (ONNX or LiteRT). Received: OUT=out.pb"),
        (["missing.keras", "out.onnx"], "sepconv export: error: No such model file. Received: MODEL=missing.keras"),
        (["MODEL", "out.tflite", "--quantize", "int8"],
         "sepconv export: error: --quantize int8 needs calibration images: --data PATH (CIFAR-10) or "
         "--calibration-data FILE.npy. Received: --quantize=int8"),
        (["MODEL", "out.onnx", "--quantize", "int4"],
         "sepconv export: error: --quantize must be one of 'none', 'int8'. Did you mean 'int8'? Received: --quantize='int4'"),
        (["MODEL", "out.tflite", "--quantize", "int8", "--int16-activations", "2"],
         "sepconv export: error: --int16-activations other than the default needs an .onnx file: LiteRT cannot mix "
         "8- and 16-bit activations (--float-ops keeps its first operators in float32 instead). Received: "
         "--int16-activations=2"),
        (["MODEL", "out.onnx", "--quantize", "int8", "--float-ops", "1"],
         "sepconv export: error: --float-ops other than the default needs a .tflite file (for ONNX Runtime, "
         "--int16-activations keeps the first activations in 16 bits). Received: --float-ops=1"),
        (["MODEL", "out.onnx", "--calibration-method", "percentile"],
         "sepconv export: error: --calibration-method is used only with --quantize=int8. Received: "
         "--calibration-method=percentile"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line(model, tmp_path, monkeypatch, capsys, argv, message):
    source = str(tmp_path / "m.keras")
    if "MODEL" in argv:
        model.save(source)
    monkeypatch.chdir(tmp_path)
    assert main(["export", *[source if a == "MODEL" else a for a in argv]]) == 2
    assert capsys.readouterr().err.strip() == message
    assert sorted(os.listdir(tmp_path)) == (["m.keras"] if "MODEL" in argv else [])


@needs_litert
def test_bench_export_times_every_runtime_and_precision_next_to_keras(capsys):
    argv = ["bench", "export", "vgg_separable", "--precision", "float32", "int8", "int8-a16", "int8-f32", "--profile",
            "--batch-size", "2", "--repeats", "2", "--warmup", "1", "--threads", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {(r["runtime"], r["precision"], r["call"]): r for r in result["results"]}
    runtimes = [("keras", "float32"), ("onnx", "int8-a16"), ("litert", "int8-f32")]  # each in one format only
    runtimes += [(f, p) for f in ("onnx", "litert") for p in ("float32", "int8")]
    assert set(rows) == {(f, p, call) for f, p in runtimes for call in ("single", "batch")}
    single = rows[("litert", "int8", "single")]
    assert single["batch_size"] == 1 and len(single["time"]["samples_ms"]) == 2 and single["speedup_vs_first"] == 1.0
    assert single["int8_speedup"] == pytest.approx(
        rows[("litert", "float32", "single")]["time"]["median_ms"] / single["time"]["median_ms"]
    )
    assert rows[("onnx", "float32", "batch")]["images_per_s"] == pytest.approx(
        2 / rows[("onnx", "float32", "batch")]["time"]["median_ms"] * 1e3
    )
    assert single["ops"]["DEPTHWISE_CONV_2D"] == 6 and result["config"]["threads"] == 1
    assert rows[("onnx", "int8-a16", "single")]["bytes"] > rows[("onnx", "int8", "single")]["bytes"]
    profile = result["profiles"]["vgg_separable"]
    assert {"Conv depthwise 3x3", "Conv 1x1"} <= set(profile) and sum(row["share"] for row in profile.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("precision, fmt, wanted", [("int8-a16", "litert", "onnx"), ("int8-f32", "onnx", "litert")])
def test_bench_export_refuses_a_precision_without_its_format(capsys, precision, fmt, wanted):
    argv = ["bench", "export", "vgg_separable", "--precision", precision, "--format", fmt]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"sepconv bench: error: --precision {precision} needs --format {wanted}. Received: --format={fmt}"
    )
