"""Atomic file writes: a reader sees the old file or the new one, never half.

Everything sepconv saves (checkpoints, reports, caches, converted models)
goes through `atomic_path`: write next to the target, then `os.replace`.
"""

import contextlib
import os
import secrets


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a fresh temporary name next to `path`; renames it over `path` on success.

    `suffix` keeps an extension some writers insist on (Keras wants `.keras`).
    On any error the temporary file is removed and `path` is left untouched.
    """
    folder, name = os.path.split(os.path.abspath(path))
    temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp{suffix}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def write_bytes(path, data):
    with atomic_path(path) as temp, open(temp, "xb") as f:
        f.write(data)


def write_text(path, text):
    with atomic_path(path) as temp, open(temp, "x", encoding="utf-8", newline="") as f:
        f.write(text)


def save_model(model, path):
    """`model.save(path)` atomically (weights, architecture, optimizer state)."""
    with atomic_path(path, suffix=".keras") as temp:
        model.save(temp)
