"""Where a result came from: one record, one schema, for every file sepconv writes.

Training runs (`config.json`), `sepconv bench layer | model | fit`, conversion reports and
the GPU check all store `environment()`; the autotune cache keys its entries by `device()`
and `cpu_name()`::

    time           start time, ISO 8601 with the UTC offset
    backend        the Keras backend ("tensorflow", "jax", "torch"; None without Keras)
    device         "CPU", or the accelerator as "GPU: <name>" / "TPU: <name>"
    cpu            the CPU model name
    cores          CPU cores this process may run on
    threads        intra-op threads of the backend
    load_average   1-minute load average when the record was made (other jobs slow timings)
    python, platform
    versions       package -> version, for the packages that are installed
    git            {"commit": sha, "dirty": bool} of the checkout holding sepconv, or None
    command        the command line
    variables      environment variables that change speed (threads, allocators, compilers)

Keras and the backends are imported only when asked about, so tools that run without Keras
(the GPU check) use the same record.
"""

import datetime
import functools
import importlib.metadata
import os
import platform
import re
import subprocess
import sys

_VERSIONED = (
    "sepconv", "keras", "numpy", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "triton",
    "matplotlib", "onnx", "onnxruntime", "tf2onnx", "ai-edge-litert",
)  # fmt: skip
_VARIABLE_PREFIXES = (
    "KERAS_", "SEPCONV_", "OMP_", "MKL_", "KMP_", "MALLOC_", "XLA_", "TF_", "JAX_", "TORCH_", "OPENBLAS_",
    "LD_PRELOAD", "CUDA_VISIBLE_DEVICES",
)  # fmt: skip


def environment(backend="keras"):
    """The provenance record described in the module docstring, JSON-ready.

    Args:
        backend: "keras" for the active Keras backend, or a backend name given directly
            (tools that run without Keras pass e.g. "torch").
    """
    backend = _keras_backend() if backend == "keras" else backend
    return {
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "backend": backend,
        "device": device(backend),
        "cpu": cpu_name(),
        "cores": usable_cores(),
        "threads": _threads(backend),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "git": git_commit(),
        "command": command_line(),
        "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith(_VARIABLE_PREFIXES)},
    }


def _keras_backend():
    try:
        import keras
    except ImportError:
        return None
    return keras.backend.backend()


def device(backend=None):
    """The accelerator `backend` computes on, "CPU" without one."""
    backend = _keras_backend() if backend is None else backend
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


@functools.cache
def cpu_name():
    """The CPU model, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _threads(backend):
    if backend == "torch":
        import torch

        return torch.get_num_threads()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.threading.get_intra_op_parallelism_threads() or usable_cores()
    return usable_cores()


def versions():
    """Versions of the installed packages among those that decide a result."""
    found = {}
    for package in _VERSIONED:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


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


def command_line():
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if program == "__main__.py":  # python -m sepconv
        program = "python -m sepconv"
    return " ".join([program] + sys.argv[1:])
