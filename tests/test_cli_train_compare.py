"""`sepconv train` and `sepconv compare`: flags, errors, an end-to-end run and resume."""

import json
import os
import shlex

import numpy as np
import pytest

import sepconv.training
from helpers import image_folder_archive
from sepconv.cli import main


@pytest.fixture
def archive(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPCONV_CACHE", str(tmp_path / "cache"))
    return image_folder_archive(tmp_path / "tiny.tar.gz")


def test_compare_end_to_end_then_resume_a_finished_run(tmp_path, archive, capsys):
    out = str(tmp_path / "run")
    argv = ["compare", "vgg", "--data", archive, "--train-size", "12", "--epochs", "1",
            "--batch-size", "6", "--lr", "0.002", "--no-augment", "--quiet", "--out", out,
            "--model-arg", "blocks=((4, 1),)"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("vgg [1/1]  epoch 1/1  loss") for line in lines)
    assert lines[-1] == f"report: {os.path.join(out, 'report.md')} and report.html"
    with open(os.path.join(out, "config.json")) as f:
        record = json.load(f)
    assert record["models"] == ["vgg"]
    config = record["config"]
    assert (config["recipe"], config["epochs"], config["batch_size"], config["lr"], config["train_size"]) == (
        "tutorial", 1, 6, 0.002, 12
    )
    assert config["data"] == archive and "image-folder" in record["data"]["source"]
    assert config["model_kwargs"] == {"blocks": [[4, 1]]}  # JSON's lists; `TrainConfig.from_dict` makes tuples
    assert record["rerun"].startswith("sepconv compare vgg --recipe tutorial --epochs 1 --batch-size 6")
    assert record["rerun"].endswith(" --model-arg 'blocks=((4, 1),)'")
    assert os.path.isfile(os.path.join(out, "report.html"))

    os.remove(os.path.join(out, "report.html"))
    assert main(["compare", "--resume", out, "--quiet"]) == 0  # nothing left to train: rebuilds the report
    assert os.path.isfile(os.path.join(out, "report.html"))
    with open(os.path.join(out, "history.csv")) as f:
        assert len(f.read().splitlines()) == 2  # header + the one epoch, not repeated


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train"], "MODEL is required unless --resume DIR is given. Received: MODEL=None"),
        (
            ["train", "vggg"],
            "Unknown model. Known models: dsc_resnet, dsc_resnet10, dsc_resnet20, dsc_resnet9, dsc_resnet9_half, "
            "mobilenet_v1, mobilenet_v2, resnet10, resnet9, resnet9_half, separable_resnet, vgg, vgg_keras, "
            "vgg_keras_separable, vgg_mobilenet, vgg_separable, vgg_tutorial. "
            "Did you mean vgg? Received: model='vggg'",
        ),
        (["compare", "--epochs", "0"], "--epochs must be positive. Received: --epochs=0"),
        (["compare", "--batch-size", "big"], "--batch-size must be an integer. Received: --batch-size=big"),
        (["compare", "--recipe", "strnog"], "--recipe must be one of 'tutorial', 'strong', 'fast'. Did you mean 'strong'? Received: --recipe='strnog'"),
        (["compare", "--preset", "fast"], "--preset must be one of 'quick'. Received: --preset='fast'"),
        (["compare", "--validation", "1.5"], "--validation must be a number in (0, 1). Received: --validation=1.5"),
        (["compare", "--validation", "val"], "--validation must be 'test' or a fraction in (0, 1). Received: --validation=val"),
        (["train", "vgg", "--lr", "-1"], "--lr must be a number in (0, inf). Received: --lr=-1.0"),
        (["train", "vgg", "--lr", "nan"], "--lr must be a number in (0, inf). Received: --lr=nan"),
        (["train", "vgg", "--label-smoothing", "1"], "--label-smoothing must be a number in [0, 1). Received: --label-smoothing=1.0"),
        (["train", "vgg", "--seed", "-3"], "--seed must be non-negative. Received: --seed=-3"),
        (["train", "vgg", "--optimizer", "adagrad"], "--optimizer must be one of 'adam', 'adamw', 'sgd'. Received: --optimizer='adagrad'"),
        (["train", "vgg", "--model-arg", "5"], "--model-arg must be KEY=VALUE with KEY a Python name. Received: --model-arg=5"),
        (
            ["train", "vgg", "--model-arg", "num_classes=3"],
            "--model-arg cannot set num_classes: the run sets it. Received: --model-arg={'num_classes': 3}",
        ),
        (
            ["train", "vgg", "--model-arg", "kernal_size=5", "--data", "/nowhere.tar.gz"],  # rejected before loading
            "Model 'vgg' takes no argument kernal_size; it takes conv, pool, input_shape, num_classes, blocks, name. "
            "Received: model_kwargs={'kernal_size': 5}",
        ),
        (
            ["train", "vgg", "--schedule", "cosine", "--epochs", "2", "--warmup-epochs", "2"],
            "warmup_epochs must be less than epochs with schedule='cosine'. Received: warmup_epochs=2.0, epochs=2",
        ),
    ],
)
def test_bad_values_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"sepconv {argv[0]}: error: {message}\n"


def test_resume_errors(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    assert main(["compare", "--resume", missing]) == 2
    assert capsys.readouterr().err.endswith(f"Received: resume={missing!r}\n")
    assert main(["train", "vgg", "--resume", missing, "--epochs", "3"]) == 2
    assert capsys.readouterr().err == (
        "sepconv train: error: --resume continues a run with its saved models and settings; "
        f"drop MODEL, --epochs. Received: --resume={missing}\n"
    )


def test_out_must_not_hold_a_run(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main(["train", "vgg", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"sepconv train: error: out already holds a run; resume it or choose another folder. Received: out={str(tmp_path)!r}\n"
    )


def test_interrupted_run_says_how_to_resume(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")

    def interrupted(models, config, out, quiet, distribution=None):
        os.makedirs(out)
        open(os.path.join(out, "config.json"), "w").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(sepconv.training, "compare", interrupted)
    assert main(["train", "vgg", "--out", out]) == 130
    assert capsys.readouterr().err == f"continue with: sepconv train --resume {out}\nsepconv train: interrupted\n"


def test_every_config_field_has_a_flag_and_the_rerun_command_repeats_the_run():
    import dataclasses

    from sepconv import _options
    from sepconv.cli import build_parser
    from sepconv.cli._train import config_from_args
    from sepconv.training import TrainConfig, make_config
    from sepconv.training._config import rerun_command

    parser = build_parser()
    flags = {action.option_strings[0] for action in parser._subparsers._group_actions[0].choices["compare"]._actions
             if action.option_strings}  # fmt: skip
    for field in dataclasses.fields(TrainConfig):
        assert _options.flag_name(field) in flags and field.metadata["help"], field.name
    config = make_config("strong", preset="quick", lr=0.01, validation=0.2, val_size=100, seed=3,
                         data="/d/my copy.tar.gz", model_kwargs={"width": 0.5, "conv": "regular", "stem": 16,
                                                                 "stages": ((8, 1), (16, 2)), "name": "7"})  # fmt: skip
    command = rerun_command(["vgg", "vgg_separable"], config)
    assert command.startswith("sepconv compare vgg vgg_separable --recipe strong --preset quick --epochs 3 ")
    assert "--data '/d/my copy.tar.gz'" in command
    assert " --model-arg width=0.5 conv=regular stem=16 'stages=((8, 1), (16, 2))' " in command  # then name='7', quoted
    args = parser.parse_args(shlex.split(command)[1:])
    assert args.models == ["vgg", "vgg_separable"]
    assert config_from_args(args) == config
