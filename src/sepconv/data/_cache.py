"""An on-disk `.npz` cache of decoded CIFAR-10 arrays, keyed by the content of the source.

The key is the SHA-256 of the source file or, for a folder, of every visible entry's
relative path, size and modification time. Files are written uncompressed (about 185 MB
for CIFAR-10, loading in well under a second) to a temporary file in the cache folder and
then renamed with `os.replace`, so a reader never sees a partial file. A cache file that
cannot be read or fails the shape checks is treated as missing and rebuilt.
"""

import hashlib
import os
import warnings

import numpy as np

from sepconv._atomic import atomic_path
from sepconv.data._archive import walk_folder

# Bump when the decoded arrays or the fields stored would change for the same source.
_VERSION = 1
_FIELDS = ("x_train", "y_train", "x_test", "y_test", "class_names", "what")


def default_dir():
    """`$SEPCONV_CACHE`, or `~/.cache/sepconv`."""
    return os.environ.get("SEPCONV_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sepconv")


def fingerprint(path):
    """SHA-256 hex digest of a file's bytes, or of a folder's paths, sizes and mtimes."""
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for rel, info in walk_folder(path):
            digest.update(f"{rel}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    else:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cache_file(cache_dir, key):
    return os.path.join(cache_dir, f"cifar10-v{_VERSION}-{key}.npz")


def load(path):
    """The cached fields as a dict, or None when missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            fields = {name: npz[name] for name in _FIELDS}
    except Exception:  # missing, truncated or foreign file: rebuild it
        return None
    x_train, y_train, x_test, y_test = (fields[k] for k in _FIELDS[:4])
    class_names = fields["class_names"]
    well_formed = (
        all(x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == (32, 32, 3) for x in (x_train, x_test))
        and all(y.dtype == np.int64 and y.ndim == 1 for y in (y_train, y_test))
        and len(x_train) == len(y_train)
        and len(x_test) == len(y_test)
        and class_names.ndim == 1
        and class_names.dtype.kind == "U"
        and fields["what"].ndim == 0
    )
    if not well_formed:
        return None
    fields["class_names"] = tuple(str(c) for c in class_names)
    fields["what"] = str(fields["what"])
    return fields


def save(path, **fields):
    """Writes the cache atomically; warns instead of failing when it cannot."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "xb") as f:
            _write(f, fields)
    except OSError as err:
        warnings.warn(f"could not write the CIFAR-10 cache {path} ({err})", stacklevel=3)

def _write(f, fields):
    arrays = {k: np.asarray(v) for k, v in fields.items()}
    arrays["class_names"] = np.asarray(fields["class_names"], dtype=str)
    np.savez(f, **arrays)
