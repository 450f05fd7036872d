"""A C kernel for PyTorch's BatchNorm (+ ReLU) on the CPU, compiled at first use.

torch's CPU kernels for a channels_last batch norm run well below the memory's speed
here, and the ReLU and its gradient are kernels of their own. `batch_norm.c` does the
training forward in two passes (sums in double, then normalize and ReLU) and the backward
in two (masked sums, then `dx`); inference is the normalize pass alone. For one
(128, 64, 32, 32) BatchNorm-ReLU on this 2-core CPU: 3.5 ms forward and 9.4 ms backward
against torch's 8.2 and 14.4 (a copy of the tensor takes 1.7). Each pass is split by rows
over OpenMP threads: torch's own team, since the library asks for `libgomp.so.1` and
torch's copy of it is already loaded (a pool of Python threads measured slower in a model
than torch's kernels: torch's idle OpenMP threads spin while waiting and took the cores).

The library is built once per source and compiler with the C compiler (`$CC`, else
`cc`) into the cache folder (`$SEPCONV_CACHE_DIR`, else `~/.cache/sepconv`), for x86-64
Linux with AVX-512, AVX2 and plain clones chosen at load. Where there is no compiler,
the build fails or `SEPCONV_NATIVE=0`, `library()` is None and callers keep torch's
kernels.
"""

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings

from sepconv.kernels import _autotune

__all__ = ["library", "normalize", "batch_norm_forward", "batch_norm_backward"]

_SOURCE = os.path.join(os.path.dirname(__file__), "batch_norm.c")
_FLAGS = ("-O3", "-shared", "-fPIC", "-fopenmp")
_POINTER, _LONG, _INT = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
_SIGNATURES = {
    "bn_sums": [_POINTER, _LONG, _LONG, _LONG, _POINTER],
    "bn_normalize": [_POINTER, _POINTER, _LONG, _LONG, _LONG, _POINTER, _POINTER, _INT],
    "bn_gradient_sums": [_POINTER, _POINTER, _POINTER, _LONG, _LONG, _LONG, _POINTER, _INT, _POINTER],
    "bn_gradient": [_POINTER, _POINTER, _POINTER, _POINTER, _LONG, _LONG, _LONG, _POINTER, _POINTER, _POINTER, _INT],
}
_MIN_ROWS_PER_THREAD = 4096  # below this, one thread: waking another costs more than it saves


def _compiler_id(compiler):
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _build_failed(reason):
    """Warns why torch's kernels stay, and returns None (no library)."""
    warnings.warn(
        f"sepconv: building the C batch-norm kernel failed, using torch's kernels ({reason}); "
        "SEPCONV_NATIVE=0 skips the attempt",
        stacklevel=3,
    )
    return None


@functools.cache
def library():
    """The compiled `batch_norm.c` as a ctypes library, or None (module docstring)."""
    if os.environ.get("SEPCONV_NATIVE", "1") == "0":
        return None
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    compiler = os.environ.get("CC", "cc")
    version = _compiler_id(compiler)
    if version is None:
        return None
    with open(_SOURCE, "rb") as file:
        source = file.read()
    digest = hashlib.sha256(source + version.encode() + " ".join(_FLAGS).encode()).hexdigest()[:16]
    folder = os.path.dirname(_autotune.cache_path())
    path = os.path.join(folder, f"batch_norm-{digest}.so")
    if not os.path.exists(path):
        try:
            os.makedirs(folder, exist_ok=True)
            handle, temp = tempfile.mkstemp(suffix=".so", dir=folder)
            os.close(handle)
            try:
                subprocess.run([compiler, *_FLAGS, "-o", temp, _SOURCE], check=True, capture_output=True, timeout=120)
                os.replace(temp, path)  # atomic: a concurrent process sees all of it or nothing
            finally:
                if os.path.exists(temp):
                    os.remove(temp)
        except subprocess.CalledProcessError as error:  # the compiler's last words say why
            lines = error.stderr.decode(errors="replace").strip().splitlines()
            return _build_failed(lines[-1] if lines else f"{compiler} exited with status {error.returncode}")
        except (OSError, subprocess.SubprocessError) as error:
            return _build_failed(error)
    try:
        lib = ctypes.CDLL(path)
    except OSError as error:  # e.g. a cache folder shared with another kind of machine
        return _build_failed(error)
    for name, arguments in _SIGNATURES.items():
        getattr(lib, name).argtypes = arguments
        getattr(lib, name).restype = None
    return lib


def _parts(rows):
    """Row ranges to split a call into: one per torch thread, none under a few thousand rows."""
    import torch

    return max(1, min(torch.get_num_threads(), rows // _MIN_ROWS_PER_THREAD))


def normalize(x, mean, invstd, gamma, beta, relu):
    """`(x - mean) * invstd * gamma + beta` per channel (then ReLU'd when `relu`), in one pass.

    `x` contiguous float32 (rows, channels); `gamma`/`beta` None: 1 and 0. The per-channel
    scale and shift are folded in double.
    """
    import torch

    scale = invstd.double() if gamma is None else gamma.double() * invstd.double()
    shift = -mean.double() * scale if beta is None else beta.double() - mean.double() * scale
    scale, shift = scale.float(), shift.float()
    rows, channels = x.shape
    y = torch.empty_like(x)
    library().bn_normalize(x.data_ptr(), y.data_ptr(), rows, channels, _parts(rows), scale.data_ptr(),
                           shift.data_ptr(), int(relu))  # fmt: skip
    return y


def batch_norm_forward(x, gamma, beta, epsilon, relu):
    """`(y, mean, invstd, variance)` for a contiguous float32 (rows, channels) `x`.

    `y` is the normalized `x` scaled by `gamma` and shifted by `beta` (None: 1 and 0),
    through a ReLU when `relu`; `variance` is the biased one.
    """
    import torch

    lib = library()
    rows, channels = x.shape
    parts = _parts(rows)
    sums = torch.empty(parts, 2, channels, dtype=torch.float64)
    lib.bn_sums(x.data_ptr(), rows, channels, parts, sums.data_ptr())
    total = sums.sum(0)
    mean = total[0] / rows
    # In double, E[x^2] - mean^2 keeps float32's precision unless |mean| exceeds the std 10,000-fold.
    variance = (total[1] / rows - mean * mean).clamp_min(0.0)
    invstd = torch.rsqrt(variance + epsilon)
    y = normalize(x, mean, invstd, gamma, beta, relu)
    return y, mean.float(), invstd.float(), variance.float()


def batch_norm_backward(grad, y, x, gamma, mean, invstd, relu):
    """`(dx, dgamma, dbeta)` of `batch_norm_forward` for the incoming `grad` (contiguous, like `x`)."""
    import torch

    lib = library()
    rows, channels = x.shape
    parts = _parts(rows)
    sums = torch.empty(parts, 2, channels, dtype=torch.float64)
    lib.bn_gradient_sums(grad.data_ptr(), y.data_ptr(), x.data_ptr(), rows, channels, parts, mean.data_ptr(), int(relu),
                         sums.data_ptr())  # fmt: skip
    total = sums.sum(0)  # sum of g, sum of g * (x - mean), g the (masked) incoming gradient
    std_inv = invstd.double()
    scale = std_inv if gamma is None else gamma.double() * std_inv
    # dx = scale * (g - mean(g) - xhat * mean(g * xhat)), xhat = (x - mean) * invstd, as a * g + b * x + k
    slope = scale * std_inv * std_inv * total[1] / rows
    a, b = scale.float(), (-slope).float()
    k = (slope * mean.double() - scale * total[0] / rows).float()
    dx = torch.empty_like(x)
    lib.bn_gradient(grad.data_ptr(), y.data_ptr(), x.data_ptr(), dx.data_ptr(), rows, channels, parts, a.data_ptr(),
                    b.data_ptr(), k.data_ptr(), int(relu))  # fmt: skip
    return dx, (total[1] * std_inv).float(), total[0].float()
