"""Keras callbacks of a training run: data order, per-epoch records, checkpoints."""

import contextlib
import os
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


class Checkpoint(keras.callbacks.Callback):
    """After every epoch: saves the model, keeps the best one, then records the state.

    Files in `folder`: `epoch-NNN.keras` (the latest epoch, with optimizer state),
    `best.keras` (highest validation accuracy; the earliest epoch wins ties) and
    `state.json` naming both, with the history so far. The state is written after the
    files it names and the previous checkpoint is deleted only after that, so at every
    instant `state.json` describes files that exist. `on_saved()` is called last.
    With `writer=False` (processes other than 0 of a distributed run) only the state in
    memory is updated; `saving()` is the context the model is saved in.
    """

    def __init__(self, folder, log, state, on_saved=None, writer=True, saving=contextlib.nullcontext):
        super().__init__()
        self.folder = folder
        self.log = log
        self.state = state
        self.on_saved = on_saved
        self.writer = writer
        self.saving = saving

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
        if best:
            layout.copy_file(os.path.join(self.folder, name), os.path.join(self.folder, layout.BEST))
        layout.write_json(os.path.join(self.folder, layout.STATE), self.state)
        if previous and previous != name:
            os.remove(os.path.join(self.folder, previous))
        if self.on_saved is not None:
            self.on_saved()
