"""`sepconv bench` end to end on tiny configurations, and its timing helpers.

No timing assertions: speed is what `sepconv bench` reports, not what tests check.
"""

import json
import re

import keras
import numpy as np
import pytest

from sepconv import kernels
from sepconv.bench import _compiled, _layer, _timing
from sepconv.cli import main

TINY = ["--batch-size", "2", "--repeats", "2", "--warmup", "1"]


def _run_json(capsys, *argv):
    assert main(["bench", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _check_environment(result):
    env = result["environment"]
    assert env["backend"] == keras.backend.backend()
    assert env["device"]
    assert {"keras", "numpy", "sepconv"} <= set(env["versions"]) and env["python"]
    assert "git" in env and "time" in env
    peak = result["machine"]["matmul"]["float32"]
    assert peak["gflops_per_s"] > 0 and peak["size"] == 16


def test_layer_bench_runs_and_reports_every_figure(capsys):
    result = _run_json(
        capsys, "layer", "--shapes", "5x5x3:8", *TINY, "--matmul-size", "16",
        "--data-format", "channels_last", "channels_first",
    )  # fmt: skip
    assert result["benchmark"] == "layer"
    _check_environment(result)
    assert result["config"]["batch_size"] == 2 and result["config"]["repeats"] == 2
    records = result["results"]
    assert len(records) == 2 * len(_layer.OPS) * len(_layer.MODES)  # formats x ops x modes
    for record in records:
        assert {"copy", "macs", "flops", "bytes", "arithmetic_intensity", "roofline_ms", "bound"} <= set(record)
        if "keras_error" in record:
            # Keras' TensorFlow Conv2D cannot run channels_first on a CPU.
            assert keras.backend.backend() == "tensorflow" and record["data_format"] == "channels_first"
            assert record["op"] in ("pointwise", "conv") and "keras" not in record
        else:
            assert len(record["keras"]["samples_ms"]) == 2
        assert record["bound"] in ("memory", "compute")
        assert record["flops"] == 2 * record["macs"] > 0
        if record["op"] == "conv":
            assert "ours" not in record and record["implementation"] is None
        else:
            assert {"ours", "ours_gflops_per_s", "ours_gb_per_s", "ours_vs_copy"} <= set(record)
            assert ("speedup_vs_keras" in record) == ("keras" in record)
        if record["op"] in ("depthwise", "dsc"):
            assert record["implementation"] in ("native", "shifted")
    dsc = next(r for r in records if r["op"] == "dsc" and r["filters"] == 8 and r["mode"] == "forward")
    # 3x3 depthwise on 3 channels and 3 -> 8 pointwise, 5x5 outputs, batch 2 (Howard et al. 2017, eq. 5).
    assert dsc["macs"] == 2 * (9 * 3 + 3 * 8) * 25
    backward = next(
        r for r in records if r["op"] == "dsc" and r["mode"] == "forward_backward" and r["data_format"] == dsc["data_format"]
    )
    assert backward["macs"] == 3 * dsc["macs"]


def test_layer_bench_table_and_saved_json(tmp_path, capsys):
    path = tmp_path / "out" / "layer.json"
    argv = ["bench", "layer", "--ops", "dsc", "--shapes", "4x4x2", "--mode", "forward", *TINY, "--matmul-size", "16"]
    assert main([*argv, "--output", str(path), "--implementation", "shifted"]) == 0
    out = capsys.readouterr().out
    assert "sepconv bench layer" in out and "Measured peak" in out
    saved = json.loads(path.read_text())
    assert saved["config"]["implementation"] == "shifted"
    assert [r["implementation"] for r in saved["results"]] == ["shifted"]
    assert kernels.get_depthwise_implementation() == "auto"  # the forced choice did not leak


def test_model_bench_runs_and_reports(capsys):
    result = _run_json(capsys, "model", "vgg_separable", *TINY, "--matmul-size", "16")
    assert result["benchmark"] == "model"
    _check_environment(result)
    assert [(r["model"], r["mode"]) for r in result["results"]] == [
        ("vgg_separable", "train"),
        ("vgg_separable", "inference"),
    ]
    for record in result["results"]:
        assert record["images_per_s"] > 0 and record["speedup_vs_first"] == 1.0
        assert record["params"] == 174_821
        assert record["depthwise_implementations"] and record["depthwise_calls"] >= 6
        assert record["flops_per_image"] > 0
        assert len(record["step"]["samples_ms"]) == 2


def test_model_bench_times_each_batch_norm_path(capsys):
    argv = ["model", "vgg_mobilenet", *TINY, "--mode", "train", "--matmul-size", "16", "--batch-norm", "fused", "keras"]
    result = _run_json(capsys, *argv)
    assert [(r["model"], r["batch_norm"]) for r in result["results"]] == [
        ("vgg_mobilenet (fused BN)", "fused"),
        ("vgg_mobilenet (keras BN)", "keras"),
    ]
    assert result["results"][0]["speedup_vs_first"] == 1.0 and result["results"][1]["images_per_s"] > 0


def test_model_bench_builds_each_model_with_the_model_args(capsys):
    argv = ["model", "separable_resnet", "dsc_resnet10", *TINY, "--mode", "inference", "--matmul-size", "16",
            "--model-arg", "channels=8", "depth=1"]  # fmt: skip
    assert main(["bench", *argv]) == 2  # dsc_resnet10 takes no `channels`: refused before anything compiles
    err = capsys.readouterr().err
    assert err.startswith("sepconv bench: error: ") and err.count("\n") == 1
    assert "Model 'dsc_resnet10' takes no argument channels, depth;" in err
    assert err.rstrip().endswith("Received: --model-arg={'channels': 8, 'depth': 1}")
    result = _run_json(capsys, *[a for a in argv if a != "dsc_resnet10"])
    assert result["config"]["model_kwargs"] == {"channels": 8, "depth": 1}
    # 5,298: tests/test_models.py counts this layout by hand (8 channels, one block a stage)
    assert [(r["model"], r["params"]) for r in result["results"]] == [("separable_resnet", 5_298)]
    assert main(["bench", *argv[:2], *argv[3:], "--model-arg", "dtype_policy=float32"]) == 2
    assert capsys.readouterr().err.startswith("sepconv bench: error: --model-arg cannot set dtype_policy: "
                                              "--dtype-policy sets it. Received: --model-arg=")  # fmt: skip


@pytest.mark.slow
def test_fit_bench_times_epochs_next_to_steps(tmp_path, capsys, monkeypatch):
    from helpers import image_folder_archive

    monkeypatch.setenv("SEPCONV_CACHE", str(tmp_path / "cache"))
    archive = image_folder_archive(tmp_path / "tiny.tar.gz", train_per_class=4, test_per_class=1)
    output = tmp_path / "fit.json"
    argv = ["fit", "vgg_separable", "--train-size", "12", "--batch-size", "4", "--epochs", "2", "--data", archive,
            "--recipe", "fast", "--dtype-policy", "mixed_bfloat16", "--augment", "off", "trivial"]  # fmt: skip
    assert main(["bench", *argv, "--output", str(output)]) == 0
    table = capsys.readouterr().out
    assert "fit / step" in table and "trivial" in table
    result = json.loads(output.read_text())
    assert result["benchmark"] == "fit" and result["data"]["train_images"] == 12
    assert [(r["augment"], r["trivial_augment"]) for r in result["results"]] == [(False, False), (True, True)]
    for record in result["results"]:
        assert (record["dtype_policy"], record["optimizer"]) == ("mixed_bfloat16", "SGD")  # read off the model
        assert len(record["fit_epochs_images_per_s"]) == 2 and len(record["step_blocks_images_per_s"]) == 3
        assert len(record["step"]["samples_ms"]) == 2 * 3  # two blocks of an epoch's three steps
        assert record["fit_vs_step"] > 0 and record["step_images_per_s"] > 0


def test_model_bench_defaults_to_keras_baselines_then_sepconv(capsys):
    result = _run_json(capsys, "model", *TINY, "--mode", "train", "--matmul-size", "16")
    assert [r["model"] for r in result["results"]] == ["vgg_keras", "vgg_keras_separable", "vgg", "vgg_separable"]
    assert [r["params"] for r in result["results"]] == [1_186_378, 174_821, 1_186_378, 174_821]


def test_tune_fills_the_cache_that_auto_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEPCONV_CACHE_DIR", str(tmp_path))
    result = _run_json(capsys, "tune", "vgg_separable", "--batch-size", "2", "--repeats", "1", "--warmup", "0")
    assert result["cache"] == str(tmp_path / "depthwise-autotune.json")
    assert len(result["results"]) == 6  # the six separable convolutions of the tutorial VGG
    entries = json.loads((tmp_path / "depthwise-autotune.json").read_text())["entries"]
    assert len(entries) == 6
    first = result["results"][0]
    assert first["implementation"] == min(first["timings_ms"], key=first["timings_ms"].get)
    call = first["call"]
    x = keras.ops.zeros(call["input_shape"])
    kernel = keras.ops.zeros(call["kernel_shape"])
    args = (call["strides"], call["padding"], call["data_format"], call["dilation_rate"])
    assert kernels.resolve(x, kernel, *args) == first["implementation"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model", "vgg_seperable"], "Unknown model. .* Did you mean vgg_separable"),
        (["layer", "--shapes", "32x32"], r"shape must be HxWxC or HxWxC:FILTERS, .* Received: shape='32x32'"),
        (["layer", "--repeats", "0"], "--repeats must be positive. Received: --repeats=0"),
        (["layer", "--warmup", "-1"], "--warmup must be non-negative. Received: --warmup=-1"),
        (["fit", "--train-size", "64"], r"train_size must be at least batch_size .* Received: train_size=64, batch_size=128"),
        (["fit", "--dtype-policy", "float16"], r"--dtype-policy must be one of .* Received: --dtype-policy='float16'"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("sepconv bench")
    assert re.search(message, err), err


def test_parse_shape():
    assert _layer.parse_shape("32x32x64") == (32, 32, 64, 64)
    assert _layer.parse_shape("16x8x3:10") == (16, 8, 3, 10)
    for bad in ("32x32", "0x4x4", "axbxc", "4x4x4:0"):
        with pytest.raises(ValueError, match="shape must be HxWxC"):
            _layer.parse_shape(bad)


@pytest.mark.parametrize("training, expected", [(False, 1 / np.sqrt(1 + 1e-3)), (True, 0.0)])
def test_forward_backward_runs_normalization_in_the_mode_asked(training, expected):
    """A summed BatchNormalization output: in inference mode (moving mean 0, variance 1) each input adds
    1/sqrt(1 + epsilon); with batch statistics the mean subtraction cancels every input's share."""
    layer = keras.layers.BatchNormalization(epsilon=1e-3)
    x = keras.ops.convert_to_tensor(np.random.default_rng(0).standard_normal((4, 3, 3, 2)).astype("float32"))
    layer.build(x.shape)
    dx, dgamma, dbeta = _compiled.forward_backward(layer, x, keras.ops.ones_like(x), training=training)()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dx), np.full(x.shape, expected), atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dbeta), [36.0, 36.0], rtol=1e-6)


def test_measure_warms_up_then_times_each_call():
    calls = []
    timing = _timing.measure(lambda: calls.append(1) or keras.ops.ones((2,)), warmup=3, repeats=5)
    assert len(calls) == 8 and len(timing.samples) == 5
    first, third = timing.quartiles
    assert min(timing.samples) <= first <= timing.median <= third <= max(timing.samples)
    assert set(timing.to_dict()) == {"median_ms", "q1_ms", "q3_ms", "min_ms", "max_ms", "samples_ms"}
    with pytest.raises(ValueError, match="repeats must be positive. Received: repeats=0"):
        _timing.measure(lambda: None, repeats=0)


def test_measure_interleaved_alternates():
    order = []
    timings = _timing.measure_interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=3
    )
    assert order == ["a", "b"] + ["a", "b"] * 3
    assert {name: len(t.samples) for name, t in timings.items()} == {"a": 3, "b": 3}


def test_timing_quartiles_of_known_samples():
    timing = _timing.Timing((4.0, 1.0, 3.0, 2.0, 5.0))
    assert timing.median == 3.0
    assert timing.quartiles == (2.0, 4.0)
    assert _timing.Timing((1.0, 2.0)).quartiles == (1.0, 2.0)  # too few samples: min and max


def test_model_summary_states_flop_ratios_plainly():
    from sepconv.bench import _render

    rows = [("a", 10.0, 1.0), ("b", 10.0, 1.3), ("c", 2.0, 3.2), ("d", 20.0, 0.5)]
    result = {
        "config": {"models": ["a", "b", "c", "d"]},
        "results": [
            {"model": m, "mode": "train", "flops_per_image": f, "speedup_vs_first": s, "fraction_of_matmul_peak": 0.1}
            for m, f, s in rows
        ],
    }
    lines = _render.model_summary(result)
    assert "b runs 1.30x as fast as a with the same FLOPs" in lines[0]
    assert "c runs 3.20x as fast as a with 5.0x fewer FLOPs" in lines[1]
    assert "d runs 0.50x as fast as a with 2.0x more FLOPs" in lines[2]
