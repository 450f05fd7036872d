"""The on-disk cache of measured depthwise choices (one-time autotune).

`sepconv bench tune MODEL` (see `sepconv.bench.autotune`) times every
depthwise implementation on each depthwise call of a model and stores the
fastest here; the "auto" selection then uses the stored choice for that exact
call and falls back to its rule for calls it has never measured.

One JSON file, `$SEPCONV_CACHE_DIR/depthwise-autotune.json` (default
`~/.cache/sepconv`), maps a key (backend, device, input shape, kernel shape,
strides, padding, data format, dilation, dtype) to an implementation name.
Writes are atomic (`sepconv._atomic`): a reader never sees half a file; a
file that does not parse, or has another layout or version, is ignored with a
warning (and replaced on the next write).
"""

import contextlib
import functools
import json
import os
import pathlib
import warnings

import keras

from sepconv import _atomic, _provenance

VERSION = 2  # 2: the device names the CPU as "CPU: <model> (<cores> cores)", from sepconv._provenance
FILE_NAME = "depthwise-autotune.json"

generation = 0  # bumped by every `store` in this process, so remembered choices are made again
_loaded = {}  # path -> (mtime_ns, entries)
_recorders = []


def cache_path():
    """Where the cache lives: `$SEPCONV_CACHE_DIR` or `~/.cache/sepconv`."""
    folder = os.environ.get("SEPCONV_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "sepconv")
    return pathlib.Path(folder) / FILE_NAME


@functools.cache
def _device_name(backend):
    device = _provenance.device(backend)
    if device != "CPU":
        return device
    return f"CPU: {_provenance.cpu_name()} ({_provenance.usable_cores()} cores)"


def device_name():
    """The device the current backend computes on: "GPU: <name>", "TPU: <name>" or "CPU: <model> (<n> cores)".

    The accelerator as `sepconv._provenance.device()` names it; a CPU by its
    model and the cores this process may use, since both change its timings.
    """
    return _device_name(keras.backend.backend())


def cache_key(input_shape, kernel_shape, strides, padding, data_format, dilation_rate, dtype):
    """The cache key of one depthwise call on the current backend and device."""
    fields = {
        "backend": keras.backend.backend(),
        "device": device_name(),
        "input_shape": [int(n) for n in input_shape],
        "kernel_shape": [int(n) for n in kernel_shape],
        "strides": list(strides),
        "padding": padding,
        "data_format": data_format,
        "dilation_rate": list(dilation_rate),
        "dtype": str(dtype),
    }
    return json.dumps(fields, sort_keys=True)


def _read(path):
    """The entries of the cache file at `path`; {} if absent or unusable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("entries"), dict):
            raise ValueError(f"expected {{'version': {VERSION}, 'entries': {{...}}}}")
        return {key: value for key, value in data["entries"].items() if isinstance(value, dict)}
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        warnings.warn(f"Ignoring the unreadable autotune cache {path}: {error}", stacklevel=3)
        return {}


def load(path=None):
    """The cached entries (key -> {"implementation": name, ...}), re-read when the file changes."""
    path = pathlib.Path(path) if path is not None else cache_path()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return {}
    cached = _loaded.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, _read(path))
        _loaded[path] = cached
    return cached[1]


def lookup(key, path=None):
    """The stored implementation name for `key`, or None."""
    entry = load(path).get(key)
    return entry.get("implementation") if entry else None


def store(key, implementation, timings_ms, path=None):
    """Adds one measured choice to the cache, replacing the file atomically."""
    global generation
    path = pathlib.Path(path) if path is not None else cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = dict(_read(path))
    entries[key] = {"implementation": implementation, "timings_ms": timings_ms}
    _atomic.write_text(path, json.dumps({"version": VERSION, "entries": entries}, indent=1, sort_keys=True))
    _loaded.pop(path, None)
    generation += 1
    return path


@contextlib.contextmanager
def record_calls():
    """Collects the arguments of every depthwise call made inside the block.

    Yields a list of dicts (input_shape, kernel_shape, strides, padding,
    data_format, dilation_rate, dtype, and the implementation it used), one
    per distinct call; dimensions unknown at the call (a traced batch size)
    are None.
    """
    calls = []
    _recorders.append(calls)
    try:
        yield calls
    finally:
        _recorders.remove(calls)


def recording():
    """Whether a `record_calls` block is open (callers skip building the record otherwise)."""
    return bool(_recorders)


def record(call):
    for calls in _recorders:
        if call not in calls:
            calls.append(call)
