"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display needed).

Each `plot_*` function but `plot_histories` takes a `Run` and returns `(figure, caption)`;
`write_plots` saves them. `plot_histories` overlays the histories of several run folders.
"""

import io
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sepconv._atomic import write_bytes
from sepconv._run_folder import HISTORY, read_history

_DPI = 110


def _figure(width=6.4, height=4.0):
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _epochs_axis(ax):
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def plot_model_accuracy(run, model):
    """The tutorial's figure: training and validation accuracy per epoch of one model."""
    rows = run.history[model]
    epochs = [r["epoch"] for r in rows]
    figure, ax = _figure()
    ax.plot(epochs, [r["accuracy"] for r in rows], marker="o", label="accuracy")
    ax.plot(epochs, [r["val_accuracy"] for r in rows], marker="o", label="val_accuracy")
    ax.set_ylabel("accuracy")
    ax.set_title(model)
    ax.legend(loc="lower right")
    _epochs_axis(ax)
    return figure, f"{model}: training and validation accuracy per epoch"


def _train_val_curves(histories, metric, title):
    """Validation (solid) and training (dashed) `metric` of every history (label -> rows) on one axis."""
    figure, ax = _figure()
    for index, (label, rows) in enumerate(histories.items()):
        epochs, color = [r["epoch"] for r in rows], f"C{index}"
        marker = "o" if len(epochs) <= 30 else None  # markers blur into a thick line over long runs
        ax.plot(epochs, [r[f"val_{metric}"] for r in rows], color=color, marker=marker, label=f"{label} val")
        ax.plot(epochs, [r[metric] for r in rows], color=color, linestyle="--", label=f"{label} train")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize="small")
    _epochs_axis(ax)
    return figure


def _run_histories(run):
    return {model: run.history[model] for model in run.models}


def plot_accuracy_overlay(run):
    """Validation (solid) and training (dashed) accuracy of every model on one axis."""
    title = "all models: validation (solid) and training (dashed) accuracy"
    return _train_val_curves(_run_histories(run), "accuracy", title), "accuracy of all models per epoch"


def plot_loss(run):
    """Validation (solid) and training (dashed) loss of every model."""
    figure = _train_val_curves(_run_histories(run), "loss", "loss: validation (solid) and training (dashed)")
    return figure, "training and validation loss of all models per epoch"


def plot_histories(folders, metric="accuracy", title=None):
    """Validation (solid) and training (dashed) `metric` by epoch of several run folders; a Figure.

    `folders` maps a label to a folder holding a history.csv: a run folder, finished or
    not, or its small files copied under docs/results. A folder that trained several
    models gives one line pair per model, labelled "label model". Save it with `save_figure`.
    """
    if not folders:
        raise ValueError(f"folders must name at least one run folder. Received: folders={folders!r}")
    histories = {}
    for label, folder in folders.items():
        path = os.path.join(folder, HISTORY)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"a run folder holds {HISTORY}; this one does not. Received: folder={folder!r}")
        runs = read_history(path)
        if not runs:
            raise ValueError(f"{path} holds no finished epoch yet. Received: folder={folder!r}")
        for model, rows in runs.items():
            if f"val_{metric}" not in rows[0]:
                raise ValueError(f"{path} has no column val_{metric}. Received: metric={metric!r}")
            histories[label if len(runs) == 1 else f"{label} {model}"] = rows
    return _train_val_curves(histories, metric, title or f"validation (solid) and training (dashed) {metric}")


def save_figure(figure, path):
    """Writes `figure` to `path` as PNG, atomically (a complete file or none)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())
    return path


def plot_accuracy_vs_params(run):
    """Best validation accuracy against parameter count (log scale), one point per model."""
    figure, ax = _figure()
    for index, result in enumerate(run.results):
        ax.scatter(result["params"], result["best_val_accuracy"], color=f"C{index}", s=60, zorder=3)
        ax.annotate(result["model"], (result["params"], result["best_val_accuracy"]),
                    textcoords="offset points", xytext=(6, 6), fontsize="small")  # fmt: skip
    chance = 1 / len(run.record["data"]["class_names"])
    ax.axhline(chance, color="gray", linestyle=":", label=f"chance ({chance:.2f})")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("best validation accuracy")
    ax.set_title("accuracy vs parameters")
    ax.grid(alpha=0.3, which="both")
    ax.margins(x=0.25, y=0.2)
    return figure, "best validation accuracy against parameter count"


def plot_time_per_epoch(run):
    """Median training time per epoch of every model (bars)."""
    figure, ax = _figure()
    models = run.models
    seconds = [result["median_epoch_time_s"] for result in run.results]
    bars = ax.bar(models, seconds, color=[f"C{i}" for i in range(len(models))])
    ax.bar_label(bars, labels=[f"{s:.2f} s" for s in seconds], padding=2)
    ax.set_ylabel("seconds per epoch (median, training steps only)")
    ax.set_title("time per epoch")
    ax.margins(y=0.15)
    ax.grid(alpha=0.3, axis="y")
    if len(models) > 3:
        ax.tick_params(axis="x", labelrotation=20)
    return figure, "median training time per epoch (first epoch excluded when there are more)"


def write_plots(run, folder):
    """Writes every figure into `folder` as PNG; returns `[(file name, caption), ...]`."""
    plots = []

    def add(name, function, *args):
        figure, caption = function(run, *args)
        save_figure(figure, os.path.join(folder, name))
        plots.append((name, caption))

    for model in run.models:
        add(f"accuracy_{model}.png", plot_model_accuracy, model)
    add("accuracy_all.png", plot_accuracy_overlay)
    add("loss.png", plot_loss)
    add("accuracy_vs_params.png", plot_accuracy_vs_params)
    add("time_per_epoch.png", plot_time_per_epoch)
    return plots
