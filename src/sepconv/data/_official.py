"""The official CIFAR-10 python release: pickled batches in `cifar-10-batches-py/`.

Each of `data_batch_1` ... `data_batch_5` and `test_batch` is a Python 2 pickle of a dict
`{b"data": uint8 array (n, 3072) holding the R, G, B planes of each 32x32 image,
b"labels": list of n ints, b"batch_label": bytes, b"filenames": list of bytes}`;
`batches.meta` holds `b"label_names"`. See https://www.cs.toronto.edu/~kriz/cifar.html.

Pickle can run arbitrary code, so these files are read with an unpickler that resolves
only the three globals a numpy array needs (`numpy.ndarray`, `numpy.dtype`, and
`multiarray._reconstruct` under its numpy 1 and numpy 2 module names); dicts, lists,
bytes, str and ints are pickle opcodes and need no globals. Anything else is refused.
"""

import io
import pickle

import numpy as np

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
FILES = TRAIN_BATCHES + (TEST_BATCH, META)

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}'") from None


def _unpickle(data, member, source):
    try:
        content = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # pickle raises many types on damaged input
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(
            f"cannot read batch file {member!r} ({reason}). Received: source={source!r}"
        ) from None
    if not isinstance(content, dict):
        raise ValueError(f"batch file {member!r} does not hold a dict. Received: source={source!r}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}


def _batch(data, member, source):
    content = _unpickle(data, member, source)
    images, labels = content.get("data"), content.get("labels")
    if not (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.ndim == 2
        and images.shape[1] == 3 * 32 * 32
        and isinstance(labels, list)
        and len(labels) == len(images)
        and all(isinstance(label, int) for label in labels)
    ):
        raise ValueError(
            f"batch file {member!r} is not in the CIFAR-10 python format (uint8 'data' of shape "
            f"(n, 3072) and n int 'labels'). Received: source={source!r}"
        )
    x = np.ascontiguousarray(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return x, np.asarray(labels, dtype=np.int64)


def read_official(files, prefix, source, default_classes):
    """Decodes the batches found at `prefix` in `files` (relative path -> bytes).

    Returns `(x_train, y_train, x_test, y_test, class_names)`.
    """
    for name in TRAIN_BATCHES + (TEST_BATCH,):
        if prefix + name not in files:
            raise ValueError(
                f"missing split {name!r}: the CIFAR-10 python release has data_batch_1 ... "
                f"data_batch_5 and test_batch. Received: source={source!r}"
            )
    train = [_batch(files[prefix + name], prefix + name, source) for name in TRAIN_BATCHES]
    x_test, y_test = _batch(files[prefix + TEST_BATCH], prefix + TEST_BATCH, source)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    class_names = tuple(default_classes)
    if prefix + META in files:
        names = _unpickle(files[prefix + META], prefix + META, source).get("label_names")
        if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
            raise ValueError(f"{prefix + META!r} has no list of label_names. Received: source={source!r}")
        class_names = tuple(n.decode("utf-8") if isinstance(n, bytes) else n for n in names)
    for y in (y_train, y_test):
        if y.size and (y.min() < 0 or y.max() >= len(class_names)):
            raise ValueError(
                f"labels must lie in [0, {len(class_names)}) for {len(class_names)} classes; found "
                f"{y.min()}..{y.max()}. Received: source={source!r}"
            )
    return x_train, y_train, x_test, y_test, class_names
