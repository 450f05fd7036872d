"""What produced a measurement: backend, device, library versions, commit, machine peaks."""

import datetime
import os
import pathlib
import platform
import subprocess
import sys

import keras
import numpy as np

import sepconv
from sepconv import kernels
from sepconv.bench import _compiled, _timing

# Settings that change speed: thread counts, allocators, compiler flags.
_VARIABLE_PREFIXES = (
    "KERAS_", "SEPCONV_", "OMP_", "MKL_", "KMP_", "MALLOC_", "XLA_", "TF_", "JAX_", "TORCH_", "LD_PRELOAD",
    "CUDA_VISIBLE_DEVICES",
)  # fmt: skip
_BACKEND_PACKAGES = {"jax": ("jax", "jaxlib"), "tensorflow": ("tensorflow",), "torch": ("torch",)}


def _version(package):
    try:
        from importlib import metadata

        return metadata.version(package)
    except Exception:  # a package that is not installed, or has no metadata
        try:
            module = __import__(package)
        except ImportError:
            return None
        return getattr(module, "__version__", None)


def _git(*args):
    root = pathlib.Path(sepconv.__file__).resolve().parent
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _threads():
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.get_num_threads()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    return os.cpu_count()


def environment():
    """Backend, device, versions, commit and time of this run, JSON-ready."""
    backend = keras.backend.backend()
    versions = {"python": platform.python_version(), "sepconv": sepconv.__version__}
    for package in ("keras", "numpy", *_BACKEND_PACKAGES.get(backend, ())):
        versions[package] = _version(package)
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "backend": backend,
        "device": kernels.device_name(),
        "cpu_count": os.cpu_count(),
        "threads": _threads(),
        "platform": platform.platform(),
        "versions": versions,
        "commit": commit,
        "commit_dirty": bool(status) if status is not None else None,
        "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith(_VARIABLE_PREFIXES)},
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
    }


def peak_matmul(size=2048, dtype="float32", warmup=2, repeats=10):
    """Measured FLOP/s of a `size` x `size` matmul (FLOPs = 2 size^3), best of at least 10 calls.

    The best rather than the median: a peak, the machine's compute ceiling.
    """
    repeats = max(repeats, 10)
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)
    timing = _timing.measure(_compiled.matmul(a, b), warmup=warmup, repeats=repeats)
    flops = 2 * size**3
    return {
        "size": size,
        "dtype": dtype,
        "flops": flops,
        "timing": timing.to_dict(),
        "gflops_per_s": flops / min(timing.samples) / 1e9,
    }


def best_peak(*measurements):
    """The fastest of several `peak_matmul` results, with all their timings."""
    best = dict(max(measurements, key=lambda m: m["gflops_per_s"]))
    best["timings"] = [m["timing"] for m in measurements]
    return best
