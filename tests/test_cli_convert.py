"""`sepconv convert` on the command line: outputs, saved files and pinned errors."""

import inspect
import json
import os
import re

import keras
import numpy as np
import pytest

from sepconv.cli import main
from sepconv.convert import convert
from sepconv.layers import DepthwiseSeparableConv2D


def numpy(x):
    return keras.ops.convert_to_numpy(x).astype(np.float64)


def small_model(rng, name="small"):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(4, 1, name="pointwise")(x)
    x = keras.layers.Conv2D(5, 3, strides=2, name="conv_b")(x)
    model = keras.Model(inputs, x, name=name)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.fixture
def saved(tmp_path, rng):
    model = small_model(rng)
    path = str(tmp_path / "model.keras")
    model.save(path)
    return model, path


def run(argv, capsys):
    code = main(["convert", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_exact_conversion_prints_the_report_and_saves_the_model(saved, tmp_path, capsys, rng):
    model, path = saved
    out_path = str(tmp_path / "converted.keras")
    code, out, err = run([path, out_path], capsys)
    assert (code, err) == (0, "")
    assert "conv_a" in out and "1x1 kernel: already a pointwise convolution" in out
    assert "Calibration: 8 random samples from N(0, 1) (no calibration data given)" in out
    assert f"Saved {out_path}" in out
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []  # no temporary left
    loaded = keras.saving.load_model(out_path, safe_mode=True)
    assert type(loaded.get_layer("conv_a")) is DepthwiseSeparableConv2D
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    expected = numpy(model(x))
    assert np.linalg.norm(numpy(loaded(x)) - expected) / np.linalg.norm(expected) < 1e-4


def test_json_report_with_rank_and_filters(saved, tmp_path, capsys):
    _, path = saved
    out_path = str(tmp_path / "out.keras")
    code, out, _ = run([path, out_path, "--rank", "2", "--exclude", "conv_b", "--json"], capsys)
    assert code == 0
    report = json.loads(out)["report"]
    assert report["rule"] == "rank=2"
    assert [(row["name"], row["rank"]) for row in report["layers"]] == [("conv_a", 2)]
    assert {row["name"]: row["reason"] for row in report["skipped"]}["conv_b"] == "excluded by exclude pattern 'conv_b'"
    assert keras.saving.load_model(out_path).get_layer("conv_a").depth_multiplier == 2


def test_calibration_data_from_a_npy_file(saved, tmp_path, capsys, rng):
    _, path = saved
    data = str(tmp_path / "calibration.npy")
    np.save(data, rng.normal(size=(10, 8, 8, 3)).astype("float32"))
    argv = [path, str(tmp_path / "o.keras"), "--energy", "0.9", "--calibration-data", data, "--calibration-size", "6"]
    code, out, _ = run([*argv, "--json"], capsys)
    report = json.loads(out)["report"]
    assert code == 0 and report["calibration"] == "6 samples given"
    assert all(row["output_error"] is not None for row in report["layers"])


def test_reconstruct_from_a_npy_file(saved, tmp_path, capsys, rng):
    _, path = saved
    data = str(tmp_path / "calibration.npy")
    np.save(data, rng.normal(size=(12, 8, 8, 3)).astype("float32"))
    argv = [path, str(tmp_path / "o.keras"), "--rank", "1", "--calibration-data", data, "--reconstruct"]
    flags = ["--iterations", "2", "--relu-rounds", "1", "--calibration-batch-size", "5", "--json"]
    code, out, _ = run([*argv, *flags], capsys)
    result = json.loads(out)
    report = result["report"]
    assert code == 0 and report["calibration"] == "12 samples given" and result["seconds"] > 0
    assert report["reconstruction"].startswith("alternating least squares on the pre-activation outputs, 2 iteration")
    assert "then 1 round(s) through the ReLU on the 1 layer(s) whose output goes" in report["reconstruction"]
    for row in report["layers"]:
        assert len(row["reconstruction_steps"]) == 5
    conv_a, conv_b = report["layers"]  # conv_a ends in its own ReLU: the pre-activation fit's error, the round's
    assert len(conv_a["reconstruction_relu_errors"]) == 2 and conv_b["reconstruction_relu_errors"] == []
    assert conv_b["reconstruction_error_after"] <= conv_b["reconstruction_error_before"]
    code, out, _ = run(argv, capsys)  # the table: before -> after per layer
    assert code == 0 and "Reconstructed error" in out and "Reconstruction: alternating least squares" in out


def test_interrupted_conversion_leaves_no_output(saved, tmp_path, capsys, monkeypatch):
    _, path = saved
    out_path = str(tmp_path / "o.keras")

    def interrupted_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", interrupted_save)
    code, _, err = run([path, out_path, "--rank", "1"], capsys)
    assert (code, err) == (130, "sepconv convert: interrupted\n")
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]


def test_no_calibration(saved, tmp_path, capsys):
    _, path = saved
    code, out, _ = run([path, str(tmp_path / "o.keras"), "--no-calibration", "--json"], capsys)
    report = json.loads(out)["report"]
    assert code == 0 and report["calibration"] == "not measured (calibration=None)"
    assert [row["output_error"] for row in report["layers"]] == [None, None]


def test_budget_on_macs(saved, tmp_path, capsys):
    _, path = saved
    argv = [path, str(tmp_path / "o.keras"), "--budget", "0.8", "--budget-metric", "macs", "--json"]
    code, out, _ = run(argv, capsys)
    totals = json.loads(out)["report"]["totals"]
    assert code == 0 and totals["macs_after"] <= 0.8 * totals["macs_before"]


def test_unsafe_is_needed_for_lambda_layers(tmp_path, capsys):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(x))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    out_path = str(tmp_path / "o.keras")
    code, _, err = run([path, out_path], capsys)
    assert code == 2
    assert err.startswith("sepconv convert: error: Not a loadable Keras model file (.keras): ")
    assert err.rstrip().endswith(f"(pass --unsafe to load it, only if you trust the file). Received: IN={path}")
    code, _, err = run([path, out_path, "--unsafe"], capsys)
    assert (code, err) == (0, "")


def test_errors_are_one_line_with_exit_code_2(saved, tmp_path, capsys):
    _, path = saved
    out_path = str(tmp_path / "o.keras")
    not_a_model = tmp_path / "text.keras"
    not_a_model.write_text("hello")
    pointwise_only = str(tmp_path / "pointwise.keras")
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Conv2D(4, 1, name="pw")(inputs), name="pw_only").save(pointwise_only)
    missing = str(tmp_path / "missing.keras")
    wrong_shape, empty = str(tmp_path / "wrong.npy"), str(tmp_path / "empty.npy")
    np.save(wrong_shape, np.zeros((6, 8, 8, 2), "float32"))
    np.save(empty, np.zeros((0, 8, 8, 3), "float32"))
    np.save(str(tmp_path / "ok.npy"), np.ones((6, 8, 8, 3), "float32"))
    cases = [
        ([missing, out_path], f"No such model file. Received: IN={missing}"),
        ([str(not_a_model), out_path], None),
        ([path, str(tmp_path / "o.h5")], f"OUT must be a .keras file. Received: OUT={tmp_path / 'o.h5'}"),
        ([path, out_path, "--rank", "0"], "--rank must be positive. Received: --rank=0"),
        ([path, out_path, "--rank", "two"], "--rank must be an integer. Received: --rank=two"),
        ([path, out_path, "--energy", "1.5"], "--energy must be a number in (0, 1]. Received: --energy=1.5"),
        ([path, out_path, "--energy", "0"], "--energy must be a number in (0, 1]. Received: --energy=0.0"),
        ([path, out_path, "--budget", "x"], "--budget must be a number. Received: --budget=x"),
        (
            [path, out_path, "--finetune-epochs", "2"],
            "--finetune-epochs needs --data PATH (a CIFAR-10 copy). Received: --finetune-epochs=2",
        ),
        (
            [path, out_path, "--finetune-epochs", "1", "--data", "d", "--learning-rate", "-1"],
            "--learning-rate must be a number in (0, inf). Received: --learning-rate=-1.0",
        ),
        (
            [path, out_path, "--rank", "1", "--reconstruct"],
            "--reconstruct needs --calibration-data PATH (a .npy array of model inputs or a CIFAR-10 copy). "
            "Received: --calibration-data=None",
        ),
        (
            [path, out_path, "--calibration-data", wrong_shape, "--reconstruct"],
            "calibration samples must have the model's input shape (8, 8, 3). Received: calibration shape=(6, 8, 8, 2)",
        ),
        (
            [path, out_path, "--calibration-data", empty, "--reconstruct"],
            "calibration must hold the same positive number of samples in every input. "
            "Received: calibration sizes=[0]",
        ),
        (
            [path, out_path, "--budget", "0.01", "--calibration-data", str(tmp_path / "ok.npy"), "--reconstruct"],
            None,
        ),
        (
            [path, out_path, "--iterations", "-1"],
            "--iterations must be non-negative. Received: --iterations=-1",
        ),
        (
            [path, out_path, "--relu-rounds", "-2"],
            "--relu-rounds must be non-negative. Received: --relu-rounds=-2",
        ),
        (
            [path, out_path, "--finetune-epochs", "1", "--data", "d", "--label-weight", "2"],
            "--label-weight must be a number in [0, 1]. Received: --label-weight=2.0",
        ),
        (
            [path, out_path, "--finetune-epochs", "1", "--data", "d", "--feature-weight", "-0.5"],
            "--feature-weight must be a number in [0, inf). Received: --feature-weight=-0.5",
        ),
        (
            [path, out_path, "--finetune-epochs", "1", "--data", "d", "--mixup", "-1"],
            "--mixup must be a number in [0, inf). Received: --mixup=-1.0",
        ),
        (
            [path, out_path, "--finetune-epochs", "1", "--data", "d", "--seed", "-1"],
            "--seed must be non-negative. Received: --seed=-1",
        ),
        (
            [path, out_path, "--finetune-epochs", "1", "--data", "d", "--clip-norm", "0"],
            "--clip-norm must be a number in (0, inf). Received: --clip-norm=0.0",
        ),
        (
            [path, out_path, "--finetune-epochs", "1", "--data", "d", "--warmup", "1"],
            "--warmup must be a number in [0, 1). Received: --warmup=1.0",
        ),
        (
            [path, out_path, "--finetune-epochs", "1", "--data", "d", "--temperature", "0"],
            "--temperature must be a number in (0, inf). Received: --temperature=0.0",
        ),
        (
            [path, out_path, "--finetune-epochs", "1", "--data", "d", "--schedule", "cos"],
            "argument --schedule: invalid choice: 'cos' (choose from 'constant', 'cosine')",
        ),
        (
            [path, out_path, "--calibration-data", str(tmp_path / "x.npy")],
            f"No such calibration file. Received: --calibration-data={tmp_path / 'x.npy'}",
        ),
        (
            [path, out_path, "--include", "nothing*"],
            "include pattern 'nothing*' matches no layer name, path or class of model 'small'. "
            "Received: include='nothing*'",
        ),
        (
            [pointwise_only, out_path],
            "Nothing to convert: no Conv1D/Conv2D layer with groups=1 and a kernel larger than 1x1 is selected. "
            "Skipped: 'pw': 1x1 kernel: already a pointwise convolution. Received: model=pw_only",
        ),
    ]
    for argv, message in cases:
        code, out, err = run(argv, capsys)
        assert code == 2 and out == ""
        assert err.count("\n") == 1
        if message is None and "--budget" in argv:
            assert re.fullmatch(
                r"sepconv convert: error: budget cannot be met: at rank 1 in every converted layer the model keeps "
                r"0\.\d{4} of its params\. Received: budget=0\.01\n",
                err,
            )
        elif message is None:
            assert err.startswith("sepconv convert: error: Not a loadable Keras model file (.keras): ")
            assert err.rstrip().endswith(f"Received: IN={not_a_model}")
        else:
            assert err == f"sepconv convert: error: {message}\n"
    assert not os.path.exists(out_path)


def test_rank_and_energy_are_exclusive(saved, tmp_path, capsys):
    _, path = saved
    assert main(["convert", path, str(tmp_path / "o.keras"), "--rank", "2", "--energy", "0.9"]) == 2
    assert capsys.readouterr().err == "sepconv convert: error: argument --energy: not allowed with argument --rank\n"


@pytest.mark.slow
@pytest.mark.data
def test_finetune_on_cifar10(tmp_path, capsys):
    from helpers import shared_cifar10

    data = shared_cifar10()
    from sepconv.models import create_model

    path = str(tmp_path / "vgg.keras")
    create_model("vgg", blocks=((8, 1), (16, 1))).save(path)
    argv = [path, str(tmp_path / "o.keras"), "--rank", "2", "--finetune-epochs", "1", "--data", data, "--json",
            "--schedule", "cosine", "--warmup", "0.1", "--feature-weight", "2", "--mixup", "0.4",
            "--reparameterize", "--seed", "3", "--clip-norm", "5"]  # fmt: skip
    code, out, _ = run([*argv, "--train-size", "500", "--calibration-data", data, "--calibration-size", "16"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["report"]["calibration"] == "16 samples given"
    tuned = result["finetune"]
    assert tuned["train_images"] == 500 and len(tuned["history"]["loss"]) == 1 and tuned["schedule"] == "cosine"
    assert tuned["warmup"] == 0.1 and tuned["feature_weight"] == 2 and tuned["mixup"] == 0.4 and tuned["reparameterize"]
    assert tuned["seed"] == 3 and tuned["clip_norm"] == 5
    assert 0 <= tuned["accuracy"]["finetuned"] <= 1


def test_cli_defaults_are_the_functions():
    from sepconv.cli._convert import RELU_ROUNDS, SCHEDULES
    from sepconv.convert._finetune import SCHEDULES as FINETUNE_SCHEDULES

    assert RELU_ROUNDS == inspect.signature(convert).parameters["relu_rounds"].default
    assert SCHEDULES == FINETUNE_SCHEDULES
