"""The run folder: its files, atomic writes, and the environment a run records.

Layout of a run folder::

    config.json     TrainConfig, models, data and validation descriptions, environment
    history.csv     one row per (model, finished epoch)
    results.json    per-model summary, written when every model has finished
    report.md, report.html, *.png   written by `sepconv.report.write_report`
    <model>/        state.json, epoch-NNN.keras (latest checkpoint), best.keras, final.keras

Every file is written to a temporary name in the same folder and renamed over the old
one with `os.replace`, so an interrupted run never leaves a half-written file behind.
"""

import csv
import datetime
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys

from sepconv._atomic import atomic_path, write_text

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
_VERSIONED = ("keras", "numpy", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "matplotlib", "sepconv")


def default_folder(model_names, now=None):
    """`runs/<YYYYmmdd-HHMMSS>-<model>-<model>...` under the current directory."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{stamp}-{'-'.join(model_names)}")


def check_new_folder(path):
    """Refuses a run folder `path` that already holds a run, or is a file."""
    if os.path.exists(os.path.join(path, "config.json")):
        raise ValueError(f"out already holds a run; resume it or choose another folder. Received: out={path!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"out must be a folder. Received: out={path!r}")
    return path


# --- atomic writes ---------------------------------------------------------------------


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
        writer.writerow({k: _csv_value(row[k]) for k in HISTORY_COLUMNS})
    write_text(path, buffer.getvalue())


def _csv_value(value):
    return f"{value:.6g}" if isinstance(value, float) else value


# --- environment -------------------------------------------------------------------------


def environment():
    """Backend, device, CPU and its load, library versions, Python, git commit and command line."""
    import keras

    return {
        "backend": keras.backend.backend(),
        "device": device(),
        "cpu": _cpu(),
        "cores": _usable_cores(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": _versions(),
        "git": git_commit(),
        "command": _command_line(),
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def device():
    """The accelerator the Keras backend computes on, or "CPU"."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        first = jax.devices()[0]
        return "CPU" if first.platform == "cpu" else f"{first.platform.upper()}: {first.device_kind}"
    if backend == "torch":
        import torch

        return f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU: {details.get('device_name', gpus[0].name)}"
        return "CPU"
    return backend


def _command_line():
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if program == "__main__.py":  # python -m sepconv
        program = "python -m sepconv"
    return " ".join([program] + sys.argv[1:])


def _cpu():
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
        name = match.group(1).strip() if match else name
    except OSError:
        pass
    return f"{name}, {_usable_cores()} usable cores"


def _usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _versions():
    versions = {}
    for package in _VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def git_commit():
    """`{"commit": sha, "dirty": bool}` of the checkout holding this package, or None."""
    here = os.path.dirname(os.path.abspath(__file__))

    def git(*args):
        return subprocess.run(
            ["git", "-C", here, *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}
