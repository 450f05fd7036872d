"""Training runs: config, data order, checkpoints, resume and the run folder.

Runs use a small synthetic CIFAR-10 (3 classes, learnable from colour) and a one-block
VGG, so each takes a few seconds on any backend.
"""

import csv
import io
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from rich.console import Console

import sepconv

from helpers import shared_cifar10
from sepconv._atomic import save_model
from sepconv.data import Batches, Cifar10
from sepconv.training import DistributionConfig, TrainConfig, compare, make_config, resume, train
from sepconv import _run_folder
from sepconv.data import stratified_subset
from sepconv.training import _epoch_display, _loop
from sepconv._schedules import warmup_cosine
from sepconv.training import _callbacks
from sepconv.training._callbacks import DataEpoch, EpochLog, TimeBudget
from sepconv.losses import SparseCrossentropy
from sepconv.metrics import Accuracy

TINY = {"blocks": ((4, 1),)}
CLASSES = ("red", "green", "blue")


def synthetic_cifar10(train_per_class=30, test_per_class=12, seed=0):
    """Noise images whose class raises one colour channel; labels cycle 0, 1, 2."""
    rng = np.random.default_rng(seed)

    def split(per_class):
        y = np.tile(np.arange(len(CLASSES)), per_class).astype(np.int64)
        x = rng.integers(0, 150, size=(len(y), 32, 32, 3))
        x[np.arange(len(y)), :, :, y] += 100
        return x.astype(np.uint8), y

    x_train, y_train = split(train_per_class)
    x_test, y_test = split(test_per_class)
    return Cifar10(x_train, y_train, x_test, y_test, CLASSES, "synthetic test data")


def tiny_config(**overrides):
    values = dict(epochs=2, batch_size=16, train_size=48, model_kwargs=TINY)
    return make_config("tutorial", **{**values, **overrides})


def read_history(folder):
    with open(os.path.join(folder, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def leftovers(folder):
    """Temporary files anywhere under `folder`."""
    return [name for _, _, files in os.walk(folder) for name in files if re.search(r"\.tmp(\.keras)?$", name)]


# --- config ----------------------------------------------------------------------------


def test_recipes_presets_and_overrides():
    tutorial = make_config("tutorial")
    assert (tutorial.optimizer, tutorial.lr, tutorial.batch_size, tutorial.epochs) == ("adam", 1e-3, 128, 10)
    assert (tutorial.augment, tutorial.validation, tutorial.label_smoothing) == (False, "test", 0.0)
    assert tutorial == TrainConfig()
    strong = make_config("strong")
    assert strong.augment and strong.schedule == "cosine" and strong.label_smoothing > 0 and strong.weight_decay > 0
    quick = make_config("strong", preset="quick", epochs=4)
    assert (quick.train_size, quick.val_size, quick.epochs, quick.optimizer) == (5000, 2000, 4, "adamw")
    assert (quick.recipe, quick.preset) == ("strong", "quick")
    fast = make_config("fast")
    assert (fast.optimizer, fast.lr, fast.momentum, fast.schedule, fast.epochs) == ("sgd", 0.1, 0.9, "cosine", 30)
    assert fast.no_decay == ("norm", "bias", "depthwise") and fast.tta and fast.validation == 0.1


def test_config_survives_json():
    config = tiny_config(validation=0.25, seed=3, no_decay=("bias", "depthwise"), cutout=8, ema_momentum=0.99,
                         time_budget=12.5, mixup=0.2, trivial_augment=True, model_kwargs={"blocks": ((4, 1), (8, 2))})  # fmt: skip
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig(no_decay="bias").no_decay == ("bias",)
    older = {k: v for k, v in config.to_dict().items() if k != "no_decay"}  # a run from before the option
    assert TrainConfig.from_dict(older).no_decay == ("none",)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(epochs=0), ValueError, r"^epochs must be positive\. Received: epochs=0$"),
        (dict(batch_size=2.5), TypeError, r"^batch_size must be an integer\. Received: batch_size=2\.5$"),
        (dict(lr=0.0), ValueError, r"^lr must be a number in \(0, inf\)\. Received: lr=0\.0$"),
        (dict(validation=1.5), ValueError, r"^validation must be a number in \(0, 1\)\. Received: validation=1\.5$"),
        (dict(validation="train"), ValueError, r"^validation must be 'test' or a fraction in \(0, 1\)\. Received: validation='train'$"),
        (dict(label_smoothing=1.0), ValueError, r"Received: label_smoothing=1\.0$"),
        (dict(optimizer="adma"), ValueError, r"Did you mean 'adam', 'adamw'\? Received: optimizer='adma'$"),
        (dict(cutout=-1), ValueError, r"^cutout must be non-negative\. Received: cutout=-1$"),
        (dict(mixup=-0.5), ValueError, r"^mixup must be a number in \[0, inf\)\. Received: mixup=-0\.5$"),
        (dict(tta_shift=1), ValueError, r"^tta_shift needs tta=True\. Received: tta_shift=1, tta=False$"),
        (dict(time_budget=0), ValueError, r"^time_budget must be a number in \(0, inf\)\. Received: time_budget=0$"),
        (dict(ema_momentum=1.0), ValueError, r"^ema_momentum must be a number in \[0, 1\)\. Received: ema_momentum=1\.0$"),
        (dict(no_decay=("norm", "bn")), ValueError, r"^no_decay must be one of .*Received: no_decay='bn'$"),
        (dict(no_decay=("none", "bias")), ValueError, r"^no_decay takes 'none' alone or a list of kinds\. Received: no_decay=\('none', 'bias'\)$"),
        (dict(model_kwargs=[1]), TypeError, r"^model_kwargs must be a dict with string keys\. Received: model_kwargs=\[1\]$"),
        (
            dict(model_kwargs={"width": 0.5, "input_shape": (8, 8, 3)}),
            ValueError,
            r"^model_kwargs cannot set input_shape: the run sets it\. Received: model_kwargs=\{'width': 0\.5, ",
        ),
        (
            dict(schedule="cosine", warmup_epochs=3, epochs=3),
            ValueError,
            r"less than epochs with schedule='cosine'\. Received: warmup_epochs=3, epochs=3$",
        ),
    ],
)
def test_config_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**kwargs)


def test_make_config_errors():
    with pytest.raises(ValueError, match=r"Did you mean 'strong'\? Received: recipe='strnog'$"):
        make_config("strnog")
    with pytest.raises(ValueError, match=r"^preset must be one of 'quick'\. Received: preset='fast'$"):
        make_config(preset="fast")
    with pytest.raises(ValueError, match=r"Did you mean epochs\? Received: epoch=3$"):
        make_config(epoch=3)


# --- data ------------------------------------------------------------------------------


def test_stratified_subset_balances_classes():
    y = np.repeat(np.arange(4), [50, 30, 12, 8])
    keep = stratified_subset(y, 30, seed=1)
    assert len(keep) == 30 and len(set(keep)) == 30 and np.all(np.diff(keep) > 0)
    assert np.bincount(y[keep]).tolist() == [8, 8, 7, 7]
    assert np.array_equal(keep, stratified_subset(y, 30, seed=1))
    assert not np.array_equal(keep, stratified_subset(y, 30, seed=2))
    assert np.bincount(y[stratified_subset(y, 90, seed=0)]).tolist() == [40, 30, 12, 8]  # small classes run out
    small_first = np.repeat(np.arange(3), [2, 10, 10])
    assert np.bincount(small_first[stratified_subset(small_first, 8, seed=0)]).tolist() == [2, 3, 3]


class _LoggedBatches(Batches):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads = []

    def __getitem__(self, index):
        self.reads.append((self.fit_epoch, self.epoch))
        return super().__getitem__(index)


class _FitEpoch(keras.callbacks.Callback):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.fit_epoch = epoch


@pytest.mark.parametrize("initial_epoch", [0, 2])
def test_epoch_e_of_fit_reads_data_epoch_e(initial_epoch):
    data = synthetic_cifar10(train_per_class=8)
    batches = _LoggedBatches(data.x_train, data.y_train, batch_size=8, augment=True)
    batches.fit_epoch = None
    model = _loop.build_model("vgg", tiny_config(), (32, 32, 3), 3, len(batches))
    model.fit(batches, epochs=4, initial_epoch=initial_epoch, shuffle=False, verbose=0,
              callbacks=[DataEpoch(batches), _FitEpoch(batches)])  # fmt: skip
    during_fit = [(fit_epoch, epoch) for fit_epoch, epoch in batches.reads if fit_epoch is not None]
    assert len(during_fit) == (4 - initial_epoch) * len(batches)
    assert all(fit_epoch == epoch for fit_epoch, epoch in during_fit)


def test_rich_progress_prints_a_line_per_epoch():
    data = synthetic_cifar10(train_per_class=8)
    batches = Batches(data.x_train, data.y_train, batch_size=8)
    model = _loop.build_model("vgg", tiny_config(), (32, 32, 3), 3, len(batches))
    log = EpochLog("vgg", len(data.y_train))
    console = Console(file=io.StringIO(), width=200)
    progress = _epoch_display.RichProgress("vgg [1/1]", log, epochs=2, console=console)
    model.fit(batches, validation_data=batches, epochs=2, shuffle=False, verbose=0, callbacks=[log, progress])
    text = console.file.getvalue()
    for row in log.rows:
        assert f"vgg [1/1]  epoch {row['epoch']}/2  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}" in text
    assert progress.progress is None  # stopped by on_train_end


# --- runs ------------------------------------------------------------------------------


def test_compare_writes_a_complete_run_folder(tmp_path, capsys):
    folder = str(tmp_path / "run")
    result = compare(["vgg", "vgg_separable"], tiny_config(), out=folder, quiet=True, data=synthetic_cifar10())
    assert set(result.models) == {"vgg", "vgg_separable"}

    for name in ("config.json", "history.csv", "results.json", "report.md", "report.html", "loss.png"):
        assert os.path.isfile(os.path.join(folder, name)), name
    for model in ("vgg", "vgg_separable"):
        assert sorted(os.listdir(os.path.join(folder, model))) == ["best.keras", "final.keras", "state.json"]
    assert leftovers(folder) == []

    record = _run_folder.read_json(os.path.join(folder, "config.json"))
    assert record["models"] == ["vgg", "vgg_separable"]
    assert TrainConfig.from_dict(record["config"]) == tiny_config()
    assert record["environment"]["backend"] == keras.backend.backend()
    assert {"device", "cpu", "python", "versions", "git", "command"} <= set(record["environment"])
    assert "keras" in record["environment"]["versions"]
    assert record["data"]["source"] == "synthetic test data"
    assert record["data"]["validation"].startswith("the test set")
    assert (record["data"]["train_images"], record["data"]["val_images"]) == (48, 36)

    rows = read_history(folder)
    assert list(rows[0]) == list(_run_folder.HISTORY_COLUMNS)
    assert [(r["model"], r["epoch"]) for r in rows] == [("vgg", "1"), ("vgg", "2"), ("vgg_separable", "1"), ("vgg_separable", "2")]
    assert all(float(r["images_per_s"]) == pytest.approx(48 / float(r["epoch_time_s"]), rel=1e-4) for r in rows)
    assert all(float(r["lr"]) == pytest.approx(1e-3) for r in rows)

    results = _run_folder.read_json(os.path.join(folder, "results.json"))["models"]
    vgg = results[0]
    assert vgg["params"] == keras.saving.load_model(os.path.join(folder, "vgg", "final.keras")).count_params()
    assert vgg["best_val_accuracy"] == pytest.approx(max(float(r["val_accuracy"]) for r in rows[:2]), rel=1e-5)
    assert vgg["timed_epochs"] == [2] and vgg["median_epoch_time_s"] == pytest.approx(float(rows[1]["epoch_time_s"]), rel=1e-4)
    assert vgg["train_time_s"] == pytest.approx(sum(float(r["epoch_time_s"]) for r in rows[:2]), rel=1e-4)
    assert vgg["test_accuracy"] is None  # validation is the test set

    out = capsys.readouterr().out
    assert len(re.findall(r"^vgg \[1/2\]  epoch \d/2  loss", out, re.MULTILINE)) == 2


def test_hold_out_validation_and_test_accuracy(tmp_path):
    config = tiny_config(epochs=1, train_size=None, validation=0.2, val_size=9, optimizer="sgd", label_smoothing=0.1)
    result = train("vgg", config, out=str(tmp_path / "run"), quiet=True, data=synthetic_cifar10(), report=False)
    record = _run_folder.read_json(str(tmp_path / "run" / "config.json"))
    assert (record["data"]["train_images"], record["data"]["val_images"]) == (72, 9)
    assert "hold-out" in record["data"]["validation"] and "subset of 9 images" in record["data"]["validation"]
    assert 0.0 <= result.models["vgg"]["test_accuracy"] <= 1.0
    assert result.models["vgg"]["timed_epochs"] == [1]


def test_cosine_schedule_warms_up_then_decays(tmp_path):
    config = tiny_config(epochs=3, schedule="cosine", warmup_epochs=1, lr=0.01, optimizer="adamw", weight_decay=0.01)
    result = train("vgg", config, out=str(tmp_path / "run"), quiet=True, data=synthetic_cifar10(), report=False)
    # 3 steps per epoch: warmup from lr/10 over steps 0-2, then 0.01 * (1 + cos(pi * t / 6)) / 2 for t = step - 3.
    assert [row["lr"] for row in result.history["vgg"]] == pytest.approx([0.001, 0.01, 0.005], rel=1e-5)


@pytest.mark.parametrize("no_decay", [("norm", "bias", "depthwise"), ("none",)])
def test_weight_decay_leaves_the_excluded_weights_alone(no_decay):
    """With a zero loss only weight decay moves the weights: excluded ones must not move."""
    config = make_config("fast", weight_decay=0.5, lr=0.1, warmup_epochs=0, schedule="constant", no_decay=no_decay)
    inputs = keras.Input((6, 6, 3))
    x = sepconv.layers.DepthwiseSeparableConv2D(4, 3, depthwise_use_bias=True, depthwise_normalization="batch",
                                                normalization="batch", name="sep")(inputs)  # fmt: skip
    outputs = keras.layers.Dense(2, name="dense")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=_loop.make_optimizer(config, steps_per_epoch=1), loss=lambda y, p: 0.0 * keras.ops.sum(p))
    before = {w.path: keras.ops.convert_to_numpy(w) for w in model.trainable_weights}
    model.train_on_batch(np.ones((2, 6, 6, 3), "float32"), np.zeros((2, 2), "float32"))
    excluded = {"norm": ("gamma", "beta"), "bias": ("bias", "depthwise_bias"), "depthwise": ("depthwise_kernel",)}
    excluded_names = {name for kind in no_decay if kind != "none" for name in excluded[kind]}
    assert {w.name for w in model.trainable_weights} >= {"gamma", "beta", "bias", "depthwise_bias", "depthwise_kernel"}
    for w in model.trainable_weights:
        # Keras' decoupled decay: w - w * weight_decay * lr, then SGD with a zero gradient.
        expected = before[w.path] if w.name in excluded_names else before[w.path] * (1 - 0.5 * 0.1)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(w), expected, rtol=1e-6, err_msg=w.path)


@pytest.mark.parametrize("shift", [0, 2])
def test_tta_accuracy_averages_the_mirrored_and_shifted_views(shift):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(3, 3, strides=4),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    data = synthetic_cifar10(test_per_class=9)
    batches = Batches(data.x_test, data.y_test, batch_size=10, shuffle=False)
    images = np.concatenate([batches[i][0] for i in range(len(batches))])
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    moves = [(0, 0), (shift, shift), (-shift, -shift), (shift, -shift), (-shift, shift)] if shift else [(0, 0)]
    mean = 0
    for rows, cols in moves:  # output pixel (i, j) shows input pixel (i + rows, j + cols), zero outside
        view = padded[:, 2 + rows : 34 + rows, 2 + cols : 34 + cols]
        for image in (view, view[:, :, ::-1]):
            mean = mean + keras.ops.convert_to_numpy(model(np.ascontiguousarray(image)))
    expected = float(np.mean(np.argmax(mean, axis=1) == data.y_test))
    assert len(_loop.tta_views(shift)) == 2 * len(moves)
    assert _loop.tta_accuracy(model, batches, shift) == pytest.approx(expected)


def _dense_model(optimizer):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


@pytest.mark.parametrize(
    "ticks, plans",
    [
        # Epoch 2 takes 20 s: the median of (10, 20) leaves room for 2 more, not 4; epoch 3 compiles the new
        # schedule and keeps the plan; epoch 4 takes 5 s, so the median of (10, 20, 5) fits 6 again.
        ([0, 10, 30, 35, 40, 50, 60], [6, 4, 6]),
        # Epoch 2 takes 30 s: one more epoch fits, and the run ends after it.
        ([0, 10, 40, 45], [6, 3]),
    ],
)
def test_time_budget_replans_the_epochs_and_the_schedule_from_the_epochs_wall_time(ticks, plans):
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 1), "float32")
    model = _dense_model(keras.optimizers.SGD(warmup_cosine(0.1, 6 * 2, warmup_steps=1)))
    clock, state, heard = iter(ticks), {}, []  # the clock reads when fit starts and as each epoch ends
    budget = TimeBudget(1.0, state, steps_per_epoch=2, epoch_s=10.0, on_plan=heard.append, clock=lambda: next(clock))
    history = model.fit(x, y, batch_size=4, epochs=6, callbacks=[budget], verbose=0)
    assert heard == plans and state == {"budget_plan": plans[-1], "budget_elapsed_s": ticks[-1]}
    assert len(history.history["loss"]) == plans[-1]
    assert model.optimizer._learning_rate.decay_steps == plans[-1] * 2 - 1


def test_time_budget_keeps_its_plan_through_small_swings_of_the_epoch_time():
    # Epochs of 9 and 11 s around the probe's 10 s: a median of the last three would move a 10-epoch plan to 9
    # after epoch 2 (10.5 s per epoch, 79 s left) and back to 10 after epoch 6, rebuilding the step twice. The
    # plan's 5 s overrun is within a tenth of the time left, so it stands, and the run ends on the budget.
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 1), "float32")
    model = _dense_model(keras.optimizers.SGD(warmup_cosine(0.1, 10 * 2, warmup_steps=1)))
    ticks = [0, 10, 21, 30, 41, 50, 59, 70, 79, 90, 100]
    clock, state, heard = iter(ticks), {}, []
    budget = TimeBudget(100 / 60, state, 2, epoch_s=10.0, on_plan=heard.append, clock=lambda: next(clock))
    history = model.fit(x, y, batch_size=4, epochs=10, callbacks=[budget], verbose=0)
    assert heard == [10] and len(history.history["loss"]) == 10
    assert state["budget_elapsed_s"] == pytest.approx(100)


def test_a_new_schedule_length_reaches_the_compiled_step():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 4)).astype("float32"), rng.normal(size=(4, 1)).astype("float32")
    model = _dense_model(keras.optimizers.SGD(warmup_cosine(0.01, 100)))
    model.train_on_batch(x, y)  # compiles the step with 100 steps of decay
    before = keras.ops.convert_to_numpy(model.layers[0].kernel)
    assert _callbacks._set_schedule_length(model, 1)  # the schedule now ends at step 1: a zero rate
    model.train_on_batch(x, y)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[0].kernel), before, atol=1e-7)


class _Interrupt(Exception):
    pass


def test_resume_continues_an_interrupted_run(tmp_path, monkeypatch):
    data, config = synthetic_cifar10(), tiny_config(epochs=3, augment=True)
    reference = train("vgg", config, out=str(tmp_path / "reference"), quiet=True, data=data, report=False)

    folder = str(tmp_path / "run")
    original = _epoch_display.EpochLines.on_epoch_end

    def interrupt_after_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt  # after the epoch's checkpoint: EpochLines runs last

    monkeypatch.setattr(_epoch_display.EpochLines, "on_epoch_end", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        compare(["vgg", "vgg_separable"], config, out=folder, quiet=True, data=data)
    monkeypatch.undo()
    assert [r["epoch"] for r in read_history(folder)] == ["1"]
    assert sorted(os.listdir(os.path.join(folder, "vgg"))) == ["best.keras", "epoch-001.keras", "state.json"]
    assert not os.path.exists(os.path.join(folder, "results.json"))
    # Debris of a save interrupted mid-way: a temp file and a checkpoint state.json does not name.
    for debris in (".epoch-002.keras.abc.tmp.keras", "epoch-002.keras"):
        open(os.path.join(folder, "vgg", debris), "wb").close()

    result = resume(folder, quiet=True, data=data)
    rows = read_history(folder)
    assert [(r["model"], r["epoch"]) for r in rows] == [("vgg", str(e)) for e in (1, 2, 3)] + [
        ("vgg_separable", str(e)) for e in (1, 2, 3)
    ]
    assert sorted(os.listdir(os.path.join(folder, "vgg"))) == ["best.keras", "final.keras", "state.json"]
    assert leftovers(folder) == []
    assert os.path.isfile(os.path.join(folder, "report.html"))
    assert len(_run_folder.read_json(os.path.join(folder, "config.json"))["resumed"]) == 1
    # Same data order, optimizer state and schedule as the uninterrupted run.
    for resumed, uninterrupted in zip(result.history["vgg"], reference.history["vgg"]):
        assert resumed["loss"] == pytest.approx(uninterrupted["loss"], rel=1e-4, abs=1e-5)
        assert resumed["val_loss"] == pytest.approx(uninterrupted["val_loss"], rel=1e-4, abs=1e-5)


def test_resume_keeps_the_weight_average_decay_exclusions_and_augmentation(tmp_path, monkeypatch):
    data = synthetic_cifar10()
    config = tiny_config(epochs=3, optimizer="sgd", lr=0.05, weight_decay=0.05, no_decay=("norm", "bias"),
                         ema_momentum=0.5, cutout=8, augment=True, trivial_augment=True, tta=True)  # fmt: skip
    reference = train("vgg", config, out=str(tmp_path / "reference"), quiet=True, data=data, report=False)
    folder = str(tmp_path / "run")
    original = _epoch_display.EpochLines.on_epoch_end

    def interrupt_after_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(_epoch_display.EpochLines, "on_epoch_end", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train("vgg", config, out=folder, quiet=True, data=data, report=False)
    monkeypatch.undo()
    result = resume(folder, quiet=True, data=data, report=False)
    for resumed, uninterrupted in zip(result.history["vgg"], reference.history["vgg"], strict=True):
        assert resumed["loss"] == pytest.approx(uninterrupted["loss"], rel=1e-4, abs=1e-5)
        assert resumed["val_loss"] == pytest.approx(uninterrupted["val_loss"], rel=1e-4, abs=1e-5)
    assert result.models["vgg"]["test_accuracy_tta"] == pytest.approx(reference.models["vgg"]["test_accuracy_tta"])


def test_weight_average_is_validated_and_saved_but_never_trained_on(tmp_path, monkeypatch):
    """One step per epoch: the trained weights follow those of a run without the average, and
    `best.keras`, `final.keras` and validation hold an average recomputed here in numpy."""
    data = synthetic_cifar10()
    options = dict(epochs=3, batch_size=48, optimizer="sgd", lr=0.01)  # 48 training images: one step
    momentum = 0.6
    trained = {}
    original = EpochLog.on_epoch_end

    def record(self, epoch, logs=None):  # after validation: the model must hold its trained weights again
        trained.setdefault(self.model_name, []).append(
            [keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables]
        )
        original(self, epoch, logs)

    monkeypatch.setattr(EpochLog, "on_epoch_end", record)
    plain = train("vgg", tiny_config(**options), out=str(tmp_path / "plain"), quiet=True, data=data, report=False)
    without, trained = trained.pop("vgg"), {}
    folder = tmp_path / "averaged"
    config = tiny_config(**options, ema_momentum=momentum)
    averaged = train("vgg", config, out=str(folder), quiet=True, data=data, report=False)
    steps = trained["vgg"]
    for step, reference in zip(steps, without, strict=True):
        for weight, expected in zip(step, reference, strict=True):
            np.testing.assert_allclose(weight, expected, rtol=1e-5, atol=1e-6)
    assert [r["loss"] for r in averaged.history["vgg"]] == pytest.approx([r["loss"] for r in plain.history["vgg"]])

    averages = [steps[0]]  # Keras starts the average at the weights after the first step
    for step in steps[1:]:
        averages.append([momentum * a + (1 - momentum) * w for a, w in zip(averages[-1], step)])

    def weights(file):
        model = keras.saving.load_model(str(folder / "vgg" / file))
        return model, [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]

    state = _run_folder.read_json(str(folder / "vgg" / "state.json"))
    final, final_weights = weights("final.keras")
    _, best_weights = weights("best.keras")
    for file_weights, expected in [(final_weights, averages[-1]), (best_weights, averages[state["best_epoch"] - 1])]:
        for weight, average in zip(file_weights, expected, strict=True):
            np.testing.assert_allclose(weight, average, rtol=1e-5, atol=1e-6)
    assert not np.allclose(final_weights[0], steps[-1][0], rtol=1e-3)  # the average is not the last step
    validation = Batches(data.x_test, data.y_test, batch_size=48, shuffle=False)  # validation="test"
    loss = final.evaluate(validation, verbose=0, return_dict=True)["loss"]
    assert averaged.history["vgg"][-1]["val_loss"] == pytest.approx(loss, rel=1e-4)


def test_weight_average_needs_one_process(tmp_path):
    distribution = DistributionConfig(coordinator="127.0.0.1:1", num_processes=2, process_id=0)
    with pytest.raises(ValueError, match=r"^ema_momentum needs one process .*Received: ema_momentum=0\.5, "
                       r"num_processes=2$"):  # fmt: skip
        train("vgg", tiny_config(ema_momentum=0.5), out=str(tmp_path / "run"), data=synthetic_cifar10(),
              distribution=distribution)  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "name, model_kwargs, params, features",
    [("dsc_resnet10", {}, 190_922, 256), ("dsc_resnet9", {}, 767_370, 512),
     ("separable_resnet", {"channels": 8, "depth": 1}, 5_298, 32)],  # fmt: skip
)
def test_fast_recipe_smoke_run_is_deterministic(tmp_path, name, model_kwargs, params, features):
    """A model with every option of the fast recipe (and cutout, TrivialAugment, mixup, weight EMA) on tiny
    data, twice."""
    data = synthetic_cifar10(train_per_class=16, test_per_class=4)
    config = make_config("fast", epochs=2, batch_size=16, warmup_epochs=0.5, cutout=8, trivial_augment=True,
                         mixup=0.2, ema_momentum=0.9, tta_shift=1, model_kwargs=model_kwargs)  # fmt: skip
    runs = [train(name, config, out=str(tmp_path / f"run{i}"), quiet=True, data=data, report=False)
            for i in range(2)]  # fmt: skip
    first, second = (run.history[name] for run in runs)
    assert [row["loss"] for row in first] == [row["loss"] for row in second]
    assert [row["val_accuracy"] for row in first] == [row["val_accuracy"] for row in second]
    assert all(np.isfinite(row["loss"]) for row in first)
    result = runs[0].models[name]
    assert result["params"] == params - 7 * (features + 1)  # 3 classes, not 10: 7 fewer dense columns
    assert 0.0 <= result["test_accuracy_tta"] <= 1.0


def test_mixed_bfloat16_run_computes_in_bfloat16_keeps_float32_weights_and_loads(tmp_path):
    """--dtype-policy mixed_bfloat16: bfloat16 layers, a float32 head and weights, the policy saved."""
    data = synthetic_cifar10(train_per_class=16, test_per_class=4)
    config = make_config("fast", epochs=2, batch_size=16, warmup_epochs=0.5, dtype_policy="mixed_bfloat16")
    run = train("dsc_resnet10", config, out=str(tmp_path / "run"), quiet=True, data=data, report=False)
    assert all(np.isfinite(row["loss"]) for row in run.history["dsc_resnet10"])
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model = keras.saving.load_model(str(tmp_path / "run" / "dsc_resnet10" / "final.keras"))
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers}
    assert policies["stem_conv"] == "mixed_bfloat16" and policies["predictions"] == "float32"
    assert {w.dtype for w in model.weights} == {"float32"}
    assert keras.backend.standardize_dtype(model(data.x_test[:2].astype("float32")).dtype) == "float32"
    assert _run_folder.read_json(str(tmp_path / "run" / "config.json"))["config"]["dtype_policy"] == "mixed_bfloat16"


def test_time_budget_sets_the_epochs_and_a_resume_keeps_them(tmp_path, monkeypatch):
    data = synthetic_cifar10()
    config = tiny_config(epochs=2, time_budget=100, optimizer="sgd", lr=0.1, schedule="cosine", warmup_epochs=0.5)
    probed = []

    def step_s(model, batches, steps=8):
        probed.append((model, len(batches)))
        return 500.0  # 48 images in batches of 16: 3 steps, 1,500 s an epoch; 100 minutes hold 4 epochs

    monkeypatch.setattr(_loop, "measure_step_s", step_s)
    original = _epoch_display.EpochLines.on_epoch_end

    def interrupt_after_second_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(_epoch_display.EpochLines, "on_epoch_end", interrupt_after_second_epoch)
    folder = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train("vgg", config, out=folder, quiet=True, data=data, report=False)
    state = _run_folder.read_json(os.path.join(folder, "vgg", "state.json"))
    assert (state["epochs"], state["budget_step_s"], state["epochs_done"]) == (4, 500.0, 2)
    assert state["budget_plan"] == 4 and 0 < state["budget_elapsed_s"] < 600  # short real epochs: the plan stands
    assert len(probed) == 1 and probed[0][1] == 3
    monkeypatch.setattr(_epoch_display.EpochLines, "on_epoch_end", original)
    monkeypatch.setattr(_loop, "measure_step_s", lambda *args, **kwargs: 100.0)  # a resume does not measure again
    result = resume(folder, quiet=True, data=data, report=False)
    rows = result.history["vgg"]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4] and result.models["vgg"]["epochs"] == 4
    # The cosine schedule spans the 4 epochs: the fourth starts at step 9 of 12, 7 of the 10 after 2 warmup steps.
    lr_last = 0.5 * 0.1 * (1 + np.cos(np.pi * 7 / 10))
    assert rows[-1]["lr"] == pytest.approx(lr_last, rel=1e-4)


def test_time_budget_errors_come_before_any_training(tmp_path):
    """The real step-time probe: no model trains an epoch in a millionth of a minute."""
    config, folder = tiny_config(time_budget=1e-6), str(tmp_path / "run")
    message = r"^time_budget fits 0 epoch\(s\) of vgg_separable here \(one takes \d+\.\d s\) and the run needs at least 1; .*Received: time_budget=1e-06$"
    with pytest.raises(ValueError, match=message):
        compare(["vgg_separable", "vgg"], config, out=folder, quiet=True, data=synthetic_cifar10(), report=False)
    assert not os.path.exists(folder)  # measured before the run folder is written
    message = (r"^time_budget needs one process without keras.distribution \(each process would measure its own "
               r"step time\)\. Received: time_budget=30\.0, devices=2, num_processes=None$")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        compare(["vgg"], tiny_config(time_budget=30.0), out=folder, data=synthetic_cifar10(),
                distribution=DistributionConfig(devices=2))  # fmt: skip
    assert make_config("fast", epochs=1, time_budget=30).epochs == 1  # the budget, not epochs, must exceed the warmup


def test_resume_refuses_other_steps_per_epoch(tmp_path, monkeypatch):
    """E.g. a resume on more devices, which cut the last partial batch to a multiple of their count."""
    original = _epoch_display.EpochLines.on_epoch_end

    def interrupt_after_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(_epoch_display.EpochLines, "on_epoch_end", interrupt_after_first_epoch)
    folder, data = str(tmp_path / "run"), synthetic_cifar10()
    with pytest.raises(KeyboardInterrupt):
        train("vgg", tiny_config(), out=folder, quiet=True, data=data, report=False)
    monkeypatch.undo()
    path = os.path.join(folder, "vgg", "state.json")
    state = _run_folder.read_json(path)
    assert state["steps_per_epoch"] == 3  # 48 images, batches of 16
    _run_folder.write_json(path, {**state, "steps_per_epoch": 4})
    with pytest.raises(ValueError, match=r"^vgg took 4 steps per epoch and would take 3 on 1 device\(s\) .*Received: devices=1$"):
        resume(folder, quiet=True, data=data, report=False)


def test_loss_and_accuracy_take_integer_labels_or_mixed_targets():
    """Against numpy: smoothed cross-entropy and top-1 agreement, for labels and for mixup's targets."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype("float32")
    labels, others, lam = np.array([0, 1, 2, 3, 1, 2]), np.array([3, 1, 0, 2, 2, 1]), 0.3
    one_hot = np.eye(4)[labels]
    targets = (lam * one_hot + (1 - lam) * np.eye(4)[others]).astype("float32")
    loss = SparseCrossentropy(label_smoothing=0.1)
    for y_true, target in [(labels, one_hot), (targets, targets)]:
        expected = np.mean(-np.sum((0.9 * target + 0.1 / 4) * np.log(probs), axis=1))
        assert float(loss(y_true, probs)) == pytest.approx(expected, rel=1e-5)
    predicted = probs.argmax(axis=1)
    for y_true, label in [(labels, labels), (targets, targets.argmax(axis=1))]:
        metric = Accuracy()
        metric.update_state(y_true, probs)
        assert float(metric.result()) == pytest.approx(np.mean(predicted == label))
    assert Accuracy.from_config(Accuracy().get_config()).name == "accuracy"


def test_a_saved_run_model_loads_after_import_sepconv_alone(tmp_path):
    """Its label-smoothing loss is registered by `import sepconv`, not only by `sepconv.training`."""
    folder = str(tmp_path / "run")
    train("vgg", tiny_config(epochs=1, label_smoothing=0.1), out=folder, quiet=True, data=synthetic_cifar10(),
          report=False)  # fmt: skip
    code = ("import sys, keras, sepconv; model = keras.saving.load_model(sys.argv[1]); "
            "assert 'sepconv.training' not in sys.modules; print(type(model.loss).__name__, model.loss.label_smoothing)")  # fmt: skip
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    out = subprocess.run([sys.executable, "-c", code, os.path.join(folder, "vgg", "final.keras")], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["SparseCrossentropy", "0.1"]


def test_resume_refuses_other_data(tmp_path):
    folder = str(tmp_path / "run")
    train("vgg", tiny_config(epochs=1), out=folder, quiet=True, data=synthetic_cifar10(), report=False)
    with pytest.raises(ValueError, match=r"^the data differ from those the run started with .*Received: resume="):
        resume(folder, quiet=True, data=synthetic_cifar10(seed=1))


def test_run_errors(tmp_path):
    data = synthetic_cifar10()
    with pytest.raises(ValueError, match=r"Did you mean vgg\? Received: model='vggg'$"):
        train("vggg", tiny_config(), out=str(tmp_path / "a"), data=data)
    with pytest.raises(ValueError, match=r"^model_names must be distinct"):
        compare(["vgg", "vgg"], tiny_config(), out=str(tmp_path / "b"), data=data)
    with pytest.raises(TypeError, match=r"^config must be a TrainConfig\. Received: config=dict$"):
        train("vgg", {"epochs": 1}, out=str(tmp_path / "c"), data=data)
    with pytest.raises(FileNotFoundError, match=r"holding config\.json\. Received: resume="):
        resume(str(tmp_path / "nothing"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"^out already holds a run.*Received: out="):
        train("vgg", tiny_config(), out=str(tmp_path / "taken"), data=data)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = _loop.build_model("vgg", tiny_config(), (32, 32, 3), 3, 3)
    path = str(tmp_path / "epoch-001.keras")
    save_model(model, path)
    before = open(path, "rb").read()

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["epoch-001.keras"]


@pytest.mark.data
@pytest.mark.slow
def test_real_cifar10_copy(tmp_path):
    source = shared_cifar10()
    config = make_config("tutorial", preset="quick", train_size=100, val_size=50, epochs=1, batch_size=50, data=source)
    result = train("vgg_separable", config, out=str(tmp_path / "run"), quiet=True)
    record = _run_folder.read_json(str(tmp_path / "run" / "config.json"))
    assert "cifar10-jpeg" in record["data"]["source"] and record["data"]["val_images"] == 50
    assert result.models["vgg_separable"]["params"] == 174_821
    assert "quick preset" in open(tmp_path / "run" / "report.md").read().lower()
