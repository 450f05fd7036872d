"""`sepconv count` and `sepconv summary` through the real command-line entry point."""

import json

import keras
import pytest
from keras import layers

from sepconv.cli import main

# Zero initializers keep model building fast on the JAX backend.
Z = {"kernel_initializer": "zeros"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_count_json_matches_hand_counts(capsys):
    code, out, err = run(capsys, "count", "--in", "3", "--out", "64", "--kernel", "3", "--json")
    assert code == 0 and err == ""
    result = json.loads(out)
    regular, keras_style, tutorial = result["variants"]
    assert [regular["params"], keras_style["params"], tutorial["params"]] == [
        3 * 3 * 3 * 64 + 64,  # 1,792
        3 * 3 * 3 + 3 * 64 + 64,  # 283
        3 * 3 * 3 + 3 + 3 * 64 + 64,  # 286
    ]
    positions = 32 * 32  # default input 32x32, stride 1, 'same' padding
    assert regular["macs"] == 9 * 3 * 64 * positions
    assert keras_style["macs"] == tutorial["macs"] == (9 * 3 + 3 * 64) * positions
    # Howard et al. 2017, Sec. 3.1: the MAC ratio is 1/N + 1/D_K^2.
    assert keras_style["macs_ratio"] == pytest.approx(1 / 64 + 1 / 9, rel=1e-12)
    assert result["cost_ratio"] == pytest.approx(1 / 64 + 1 / 9, rel=1e-12)
    assert keras_style["params_ratio"] == pytest.approx(283 / 1792, rel=1e-12)


def test_count_stride_input_and_multiplier(capsys):
    argv = ["count", "--in", "32", "--out", "64", "--kernel", "3x3", "--stride", "2"]
    code, out, _ = run(capsys, *argv, "--input", "31x31", "--depth-multiplier", "2", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["output_size"] == [16, 16]  # ceil(31 / 2)
    regular, keras_style, tutorial = result["variants"]
    assert regular["macs"] == 9 * 32 * 64 * 256
    assert keras_style["params"] == 9 * 32 * 2 + 32 * 2 * 64 + 64
    assert tutorial["params"] == keras_style["params"] + 32 * 2
    assert keras_style["macs"] == (9 * 32 * 2 + 32 * 2 * 64) * 256


def test_count_table_shows_numbers_and_formulas(capsys):
    code, out, _ = run(capsys, "count", "--in", "3", "--out", "64", "--kernel", "3")
    assert code == 0
    for text in ("1,792", "283", "286", "1,769,472", "224,256"):
        assert text in out
    assert "params = K*M*m + M*m*N + N = 9*3*1 + 3*1*64 + 64 = 283" in out
    assert "params = K*M*m + M*m + M*m*N + N = 9*3*1 + 3*1 + 3*1*64 + 64 = 286" in out
    assert "m*(1/N + 1/K) = 1*(1/64 + 1/9) = 0.1267" in out
    assert "arXiv:1704.04861" in out


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--in", "0", "--in must be positive. Received: --in=0"),
        ("--out", "many", "--out must be an integer. Received: --out=many"),
        ("--kernel", "0", "--kernel must be positive integers joined by 'x', e.g. 3x3. Received: --kernel=0"),
        ("--kernel", "3x3x3", "--kernel must be N or NxN. Received: --kernel=3x3x3"),
        ("--input", "32xq", "--input must be positive integers joined by 'x', e.g. 3x3. Received: --input=32xq"),
        ("--stride", "-1", "--stride must be positive integers joined by 'x', e.g. 3x3. Received: --stride=-1"),
        ("--depth-multiplier", "1.5", "--depth-multiplier must be an integer. Received: --depth-multiplier=1.5"),
    ],
)
def test_count_bad_values_exit_2_with_one_line(capsys, flag, value, message):
    argv = {"--in": "3", "--out": "64", "--kernel": "3"}
    argv[flag] = value
    code, out, err = run(capsys, "count", *[item for pair in argv.items() for item in pair])
    assert code == 2 and out == ""
    assert err == f"sepconv count: error: {message}\n"


@pytest.fixture
def saved_model(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = layers.SeparableConv2D(
        16, 3, padding="same", name="sep", depthwise_initializer="zeros", pointwise_initializer="zeros"
    )(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, layers.Dense(10, name="head", **Z)(x), name="tiny")
    path = tmp_path / "tiny.keras"
    model.save(path)
    return path, model.count_params()


TINY_MACS = 64 * (3 * 9 + 3 * 16) + 16 * 10  # separable 3->16 on 8x8, then dense 16->10


def test_summary_json_of_a_keras_file(capsys, saved_model):
    path, params = saved_model
    code, out, err = run(capsys, "summary", str(path), "--json", "--batch-size", "4")
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["model_name"] == "tiny" and result["batch_size"] == 4
    assert result["totals"]["params"] == params == (27 + 48 + 16) + 4 * 16 + (16 * 10 + 10)
    assert result["totals"]["macs"] == 4 * TINY_MACS
    assert [row["name"] for row in result["layers"]] == ["sep", "bn", "pool", "head"]
    assert result["not_counted"] == []


def test_summary_table_of_a_keras_file_at_another_input_shape(capsys, saved_model):
    path, _ = saved_model
    code, out, _ = run(capsys, "summary", str(path), "--input-shape", "16x16x3")
    assert code == 0
    assert "tiny (batch 1, graph)" in out
    assert f"MACs: {256 * (3 * 9 + 3 * 16) + 16 * 10:,}" in out
    assert "Convention: MACs count the multiply-accumulates" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.keras"], "No such model file. Received: MODEL=missing.keras"),
        (["{model}", "--input-shape", "16x16"], "Received: input_shape=(16, 16)"),
        (["{model}", "--input-shape", "16xx3"], "--input-shape must be positive integers joined by 'x', e.g. 32x32x3."),
        (["{model}", "--batch-size", "0"], "--batch-size must be positive. Received: --batch-size=0"),
    ],
)
def test_summary_errors_exit_2_with_one_line(capsys, saved_model, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    path, _ = saved_model
    argv = [item.replace("{model}", str(path)) for item in argv]
    code, out, err = run(capsys, "summary", *argv)
    assert code == 2 and out == ""
    assert err.startswith("sepconv summary: error: ") and err.count("\n") == 1
    assert message in err


def test_summary_of_a_file_that_is_not_a_model(capsys, tmp_path):
    path = tmp_path / "notes.keras"
    path.write_text("not a zip archive")
    code, _, err = run(capsys, "summary", str(path))
    assert code == 2
    assert err.startswith("sepconv summary: error: Not a loadable Keras model file (.keras): ")
    assert err.rstrip().endswith(f"Received: MODEL={path}")


def registry():
    models = pytest.importorskip("sepconv.models")
    if not hasattr(models, "create_model") or not hasattr(models, "list_models"):
        pytest.skip("sepconv.models has no registry yet")
    return models


def test_summary_unknown_name_lists_known_models(capsys):
    models = registry()
    code, _, err = run(capsys, "summary", "vgg_seperable")
    assert code == 2
    assert f"Known models: {', '.join(models.list_models())}." in err
    assert "Did you mean vgg_separable," in err
    assert err.rstrip().endswith("Received: MODEL='vgg_seperable'")


# Slow: building the tutorial VGG takes tens of seconds on the JAX backend.
@pytest.mark.slow
@pytest.mark.parametrize("name, params", [("vgg", 1_186_378), ("vgg_separable", 174_821)])
def test_summary_of_registry_models(capsys, name, params):
    registry()
    code, out, _ = run(capsys, "summary", name, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["totals"]["params"] == params
    assert result["not_counted"] == []


def test_summary_builds_a_registry_model_with_the_model_args(capsys, saved_model):
    registry()
    code, out, _ = run(capsys, "summary", "separable_resnet", "--model-arg", "channels=8", "depth=1", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["totals"]["params"] == 5_298  # tests/test_models.py counts this layout by hand
    assert result["model_kwargs"] == {"channels": 8, "depth": 1}
    code, out, _ = run(capsys, "summary", "separable_resnet", "--model-arg", "channels=8", "depth=1")
    assert code == 0 and "Params: 5,298 (4,914 trainable, 384 non-trainable)" in out
    assert out.rstrip().endswith("Built with channels=8, depth=1.")
    path, _ = saved_model
    for argv, message in [
        (["separable_resnet", "--model-arg", "chanels=8"], "Did you mean channels? Received: --model-arg={'chanels': 8}"),
        ([str(path), "--model-arg", "channels=8"], f"--model-arg builds a built-in model; MODEL is a file. "
                                                   f"Received: MODEL={path}"),
        (["separable_resnet", "--model-arg", "8"], "--model-arg must be KEY=VALUE with KEY a Python name. "
                                                   "Received: --model-arg=8"),
    ]:  # fmt: skip
        code, out, err = run(capsys, "summary", *argv)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert err.rstrip().endswith(message)


def test_piped_output_keeps_long_lines_whole(capsys):
    """Logs and pipes get each message on one line, however long (paths make them long)."""
    from sepconv.cli import _args

    line = "Wrote " + "/very/long/path" * 20 + ".keras; BatchNormalization folded: 5, left: 0"
    _args.console().print(line, highlight=False)
    assert capsys.readouterr().out == line + "\n"
