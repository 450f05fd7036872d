"""A finished run folder, read back: config.json, results.json and history.csv."""

import csv
import dataclasses
import json
import os


_NUMBERS = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s", "images_per_s", "lr")


@dataclasses.dataclass(frozen=True)
class Run:
    """What a report shows.

    Attributes:
        folder: the run folder.
        record: config.json (models, config, rerun command, data, environment, resumed).
        results: the per-model summaries of results.json, in the order trained.
        notes: results.json's notes on timing, MACs and the train-val gap.
        history: model name -> list of per-epoch rows of history.csv (numbers as floats).
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
    """Reads a run folder written by `sepconv.training`; all three files must be there."""
    paths = {name: os.path.join(folder, name) for name in ("config.json", "results.json", "history.csv")}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"a finished run folder has {name}; this one does not. Received: folder={folder!r}")
    with open(paths["config.json"], encoding="utf-8") as f:
        record = json.load(f)
    with open(paths["results.json"], encoding="utf-8") as f:
        results = json.load(f)
    history = {}
    with open(paths["history.csv"], encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            parsed = {**row, "epoch": int(row["epoch"]), **{k: float(row[k]) for k in _NUMBERS}}
            history.setdefault(row["model"], []).append(parsed)
    return Run(folder=folder, record=record, results=results["models"], notes=results["notes"], history=history)


