"""Keras callbacks of a training run: data order, per-epoch records, checkpoints, the time budget."""

import contextlib
import os
import statistics
import time

import keras

from sepconv._atomic import save_model
from sepconv import _run_folder as layout


def current_lr(optimizer):
    """The learning rate the optimizer's next step will use, as a float."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class DataEpoch(keras.callbacks.Callback):
    """Makes epoch `e` of `fit` read the batches of epoch `e` of a `sepconv.data.Batches`.

    `Batches` draws the order (and augmentation) of epoch `e` in `on_epoch_end()` from its
    `epoch` counter, and Keras calls `on_epoch_end()` once more when `fit` starts. Setting
    the counter at the start of every epoch makes the data of epoch `e` depend on
    `(seed, e)` only, so a run resumed at `initial_epoch=k` sees exactly the batches an
    uninterrupted run would. (Batches are fetched after `on_epoch_begin` on every backend.)
    """

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch - 1
        self.batches.on_epoch_end()


def _optional_float(value):
    return None if value is None else float(value)


class EpochLog(keras.callbacks.Callback):
    """One row per epoch: metrics, training wall time, images per second, learning rate.

    `epoch_time_s` runs from the start of the epoch to the end of its last training step
    (logs are converted to Python floats after every step, which waits for the device),
    so validation and checkpointing are excluded. `lr` is the rate of the epoch's first step.
    """

    def __init__(self, model_name, num_images, rows=()):
        super().__init__()
        self.model_name = model_name
        self.num_images = num_images
        self.rows = list(rows)

    def on_epoch_begin(self, epoch, logs=None):
        self._lr = current_lr(self.model.optimizer)
        self._start = self._end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = self._end - self._start
        self.rows.append(
            {
                "model": self.model_name,
                "epoch": epoch + 1,
                "loss": float(logs["loss"]),
                "accuracy": float(logs["accuracy"]),
                "val_loss": _optional_float(logs.get("val_loss")),
                "val_accuracy": _optional_float(logs.get("val_accuracy")),
                "epoch_time_s": seconds,
                "images_per_s": self.num_images / seconds,
                "lr": self._lr,
            }
        )


class WeightAverage(keras.callbacks.SwapEMAWeights):
    """Validation and the saved models see the optimizer's moving average of the weights
    (`use_ema=True`); training never does.

    Keras' callback swaps the average into the model for each evaluation and back after it;
    `swapped()` does the same around any block (`Checkpoint` saves `best.keras` in one).
    Writing the average into the trained weights every epoch instead restarted each epoch
    from weights lagging the schedule: 0.708 held-out accuracy against 0.840 without the
    average (`dsc_resnet9_half`, fast recipe, 12 minutes, momentum 0.999). BatchNorm's moving
    statistics are not averaged: the average is used with those gathered under the trained
    weights (`docs/results/heldout18-ema-dsc_resnet9_half/` measures what that costs).
    """

    @contextlib.contextmanager
    def swapped(self):
        self.on_test_begin()
        try:
            yield
        finally:
            self.on_test_end()


class Checkpoint(keras.callbacks.Callback):
    """After every epoch: saves the model, keeps the best one, then records the state.

    Files in `folder`: `epoch-NNN.keras` (the latest epoch, with optimizer state),
    `best.keras` (highest validation accuracy; the earliest epoch wins ties) and
    `state.json` naming both, with the history so far. The state is written after the
    files it names and the previous checkpoint is deleted only after that, so at every
    instant `state.json` describes files that exist. `on_saved()` is called last.
    With `writer=False` (processes other than 0 of a distributed run) only the state in
    memory is updated; `saving()` is the context the model is saved in. With a
    `WeightAverage`, `best.keras` holds the averaged weights, which validation measured,
    and `epoch-NNN.keras` the trained ones, with the average in the optimizer, to resume.
    """

    def __init__(self, folder, log, state, on_saved=None, writer=True, saving=contextlib.nullcontext, average=None):
        super().__init__()
        self.folder = folder
        self.log = log
        self.state = state
        self.on_saved = on_saved
        self.writer = writer
        self.saving = saving
        self.average = average

    def on_epoch_end(self, epoch, logs=None):
        row = self.log.rows[-1]
        previous = self.state.get("checkpoint")
        name = layout.checkpoint_name(epoch + 1)
        best = self.state.get("best_epoch") is None or row["val_accuracy"] > self.state["best_val_accuracy"]
        if best:
            self.state.update(best_epoch=row["epoch"], best_val_accuracy=row["val_accuracy"])
        self.state.update(epochs_done=epoch + 1, checkpoint=name, history=list(self.log.rows))
        if not self.writer:
            return
        with self.saving():
            save_model(self.model, os.path.join(self.folder, name))
        if best and self.average is None:
            layout.copy_file(os.path.join(self.folder, name), os.path.join(self.folder, layout.BEST))
        elif best:
            with self.saving(), self.average.swapped():
                save_model(self.model, os.path.join(self.folder, layout.BEST))
        layout.write_json(os.path.join(self.folder, layout.STATE), self.state)
        if previous and previous != name:
            os.remove(os.path.join(self.folder, previous))
        if self.on_saved is not None:
            self.on_saved()


class TimeBudget(keras.callbacks.Callback):
    """Ends a run within `minutes` of wall clock, its cosine schedule with it.

    `fit` runs for `state["epochs"]`, planned from the step time alone
    (`_loop.budget_epochs`), at most. After each epoch the plan is checked against the
    median wall time (steps, validation, the previous checkpoint) of the last `window`
    measured epochs, the probe's estimate `epoch_s` counting as one until `window` are. When
    the plan would end more than `tolerance` of the time left past the budget, or leaves
    a whole epoch and that much more unused, the plan and the schedule's decay move to
    the epochs that fit. A host that slows down thus costs epochs rather than minutes, and
    one slow epoch does not cost the rest of the run. The band keeps the plan, and with it
    the schedule's decay, from following every swing of a host whose epochs vary by a
    fifth from one to the next; it narrows as the time left does, so the last plans are
    exact. The schedule's length is compiled into the train step, so each new plan
    rebuilds it; the epoch that compiles it is not measured and keeps the plan. `state` keeps the
    plan (`budget_plan`) and the wall time spent (`budget_elapsed_s`) for a resume; place
    this callback before `Checkpoint`, which saves them. `on_plan(epochs)` hears of each plan.
    """

    window = 8  # epochs in the median; with three, a host of 32 s and 42 s epochs moved an hour's plan 33 times
    tolerance = 0.1  # share of the time left by which the plan may miss the budget before it changes

    def __init__(self, minutes, state, steps_per_epoch, epoch_s=None, on_plan=None, clock=time.perf_counter):
        super().__init__()
        self.seconds = minutes * 60
        self.state = state
        self.steps_per_epoch = steps_per_epoch
        self.times = [] if epoch_s is None else [epoch_s]
        self.on_plan = on_plan
        self.clock = clock

    def on_train_begin(self, logs=None):
        self.state.setdefault("budget_plan", self.params["epochs"])
        self._spent = self.state.get("budget_elapsed_s", 0.0)
        self._start = self._mark = self.clock()
        self._tracing = True  # the first epoch of `fit` also compiles its steps
        if self.on_plan is not None:
            self.on_plan(self.state["budget_plan"])

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        last, self._mark = now - self._mark, now
        elapsed = self._spent + now - self._start
        self.state["budget_elapsed_s"] = elapsed
        done, plan = epoch + 1, self.state["budget_plan"]
        if self._tracing:
            self._tracing = False
            fits = plan if elapsed < self.seconds else done
        else:
            self.times.append(last)
            epoch_s = statistics.median(self.times[-self.window :])
            left = max(self.seconds - elapsed, 0.0)
            unused = left - (plan - done) * epoch_s  # negative: the plan runs past the budget
            band = self.tolerance * left
            fits = plan if -band <= unused < epoch_s + band else done + int(left // epoch_s)
        fits = min(fits, self.params["epochs"])
        if fits != plan:
            self.state["budget_plan"] = fits
            self._tracing = _set_schedule_length(self.model, fits * self.steps_per_epoch)
            if self.on_plan is not None:
                self.on_plan(fits)
        if done >= self.state["budget_plan"]:
            self.model.stop_training = True


def _set_schedule_length(model, steps):
    """Makes a warmup-cosine schedule (`sepconv._schedules.warmup_cosine`) end at update `steps`;
    returns whether the train step was rebuilt."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    schedule = optimizer._learning_rate  # Keras keeps no public handle on the schedule object
    if isinstance(schedule, keras.optimizers.schedules.CosineDecay):
        schedule.decay_steps = max(steps - schedule.warmup_steps, 1)
        model.make_train_function(force=True)
        return True
    return False
