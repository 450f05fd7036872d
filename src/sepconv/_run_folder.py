"""The run folder: its layout, defined once for the writer (training) and the reader (report).

Layout::

    config.json     models, TrainConfig, rerun command, data description, environment, resumed
    history.csv     one row per (model, finished epoch), columns `HISTORY_COLUMNS`
    results.json    per-model summary, written when every model has finished
    report.md, report.html, *.png   written by `sepconv.report.write_report`
    <model>/        state.json, epoch-NNN.keras (latest checkpoint), best.keras, final.keras

Every file is written to a temporary name in the same folder and renamed over the old
one (`sepconv._atomic`), so an interrupted run never leaves a half-written file behind.
"""

import csv
import dataclasses
import datetime
import io
import json
import os
import re
import shutil

from sepconv._atomic import atomic_path, write_text

CONFIG = "config.json"
HISTORY = "history.csv"
RESULTS = "results.json"
REPORTS = ("report.md", "report.html")
STATE = "state.json"
BEST = "best.keras"
FINAL = "final.keras"
HISTORY_COLUMNS = (
    "model",
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "epoch_time_s",
    "images_per_s",
    "lr",
)
_TEXT_COLUMNS = ("model",)
_INT_COLUMNS = ("epoch",)


def checkpoint_name(epoch):
    """`epoch-NNN.keras`: the checkpoint written after 1-based `epoch`."""
    return f"epoch-{epoch:03d}.keras"


def is_checkpoint(name):
    return re.fullmatch(r"epoch-\d{3,}\.keras", name) is not None


def default_folder(model_names, now=None):
    """`runs/<YYYYmmdd-HHMMSS>-<model>-<model>...` under the current directory."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{stamp}-{'-'.join(model_names)}")


def check_new_folder(path):
    """Refuses a run folder `path` that already holds a run, or is a file."""
    if os.path.exists(os.path.join(path, CONFIG)):
        raise ValueError(f"out already holds a run; resume it or choose another folder. Received: out={path!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"out must be a folder. Received: out={path!r}")
    return path


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def copy_file(source, path):
    with atomic_path(path) as temp:
        shutil.copyfile(source, temp)


def remove_temporaries(folder):
    """Deletes leftovers of writes that were interrupted (`.<name>.<random>.tmp*`)."""
    for name in os.listdir(folder):
        if name.startswith(".") and re.search(r"\.tmp(\.keras)?$", name):
            os.remove(os.path.join(folder, name))


def write_history(path, rows):
    """history.csv from a list of dicts with `HISTORY_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{row[k]:.6g}" if isinstance(row[k], float) else row[k] for k in HISTORY_COLUMNS})
    write_text(path, buffer.getvalue())


def read_history(path):
    """model name -> list of rows of history.csv, numbers parsed."""
    history = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            parsed = {
                k: v if k in _TEXT_COLUMNS else int(v) if k in _INT_COLUMNS else float(v) for k, v in row.items()
            }
            history.setdefault(row["model"], []).append(parsed)
    return history


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished run folder, read back: what a report shows.

    Attributes:
        folder: the run folder.
        record: config.json (models, config, rerun command, data, environment, resumed).
        results: the per-model summaries of results.json, in the order trained.
        notes: results.json's notes on timing, MACs and the train-val gap.
        history: model name -> list of per-epoch rows of history.csv (numbers parsed).
    """

    folder: str
    record: dict
    results: list
    notes: dict
    history: dict

    @property
    def models(self):
        return [result["model"] for result in self.results]


def load_run(folder):
    """Reads a finished run folder; config.json, results.json and history.csv must be there."""
    for name in (CONFIG, RESULTS, HISTORY):
        if not os.path.isfile(os.path.join(folder, name)):
            raise FileNotFoundError(f"a finished run folder has {name}; this one does not. Received: folder={folder!r}")
    results = read_json(os.path.join(folder, RESULTS))
    return Run(
        folder=folder,
        record=read_json(os.path.join(folder, CONFIG)),
        results=results["models"],
        notes=results["notes"],
        history=read_history(os.path.join(folder, HISTORY)),
    )
