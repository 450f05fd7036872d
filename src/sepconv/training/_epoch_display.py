"""What a run shows while it trains: Rich progress bars, or one plain line per epoch."""

import sys

import keras
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def epoch_summary(row, epochs):
    """`epoch 2/10  loss 1.2345  acc 0.5678  val_loss ...  12.3 s  406 img/s  lr 1.0e-03`."""
    return (
        f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
        f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  "
        f"{row['epoch_time_s']:.1f} s  {row['images_per_s']:,.0f} img/s  lr {row['lr']:.2e}"
    )


class EpochLines(keras.callbacks.Callback):
    """Prints `<label> epoch e/E  loss ... val_acc ... s img/s lr` once per epoch, for logs and CI."""

    def __init__(self, label, log, epochs, stream=None):
        super().__init__()
        self.label = label
        self.log = log
        self.epochs = epochs
        self.stream = stream

    def on_epoch_end(self, epoch, logs=None):
        stream = self.stream or sys.stdout
        print(f"{self.label}  {epoch_summary(self.log.rows[-1], self.epochs)}", file=stream, flush=True)

    def set_epochs(self, epochs):
        """A new plan (`TimeBudget`): the run ends after `epochs`."""
        self.epochs = epochs

    def close(self):
        pass


class RichProgress(keras.callbacks.Callback):
    """Two bars on stderr: epochs of this model, and steps of the current epoch.

    Both show elapsed time and ETA; the step bar shows the running loss and accuracy, and
    a line per finished epoch stays above the bars. Call `close()` when `fit` ends or fails.
    """

    def __init__(self, label, log, epochs, initial_epoch=0, console=None):
        super().__init__()
        self.label = label
        self.log = log
        self.epochs = epochs
        self.initial_epoch = initial_epoch
        self.console = console or Console(stderr=True)
        self.progress = None

    def on_train_begin(self, logs=None):
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
        )
        self.progress.start()
        self.epoch_task = self.progress.add_task(
            self.label, total=self.epochs, completed=self.initial_epoch, metrics=""
        )
        self.step_task = self.progress.add_task("", total=self.params["steps"], metrics="")

    def on_epoch_begin(self, epoch, logs=None):
        self.progress.reset(self.step_task, total=self.params["steps"], description=f"  epoch {epoch + 1}")

    def on_train_batch_end(self, batch, logs=None):
        metrics = f"loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}"
        self.progress.update(self.step_task, completed=batch + 1, metrics=metrics)

    def on_epoch_end(self, epoch, logs=None):
        row = self.log.rows[-1]
        self.progress.console.print(f"{self.label}  {epoch_summary(row, self.epochs)}", highlight=False, soft_wrap=True)
        self.progress.update(self.epoch_task, completed=epoch + 1, metrics=f"val_acc {row['val_accuracy']:.4f}")

    def set_epochs(self, epochs):
        """A new plan (`TimeBudget`): the run ends after `epochs`."""
        self.epochs = epochs
        if self.progress is not None:
            self.progress.update(self.epoch_task, total=epochs)

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
