"""`load_cifar10`: find a CIFAR-10 copy, decode it once, cache the arrays."""

import os

import numpy as np

from sepconv.data import _cache
from sepconv.data._archive import container_of, read_tree
from sepconv.data._cifar10 import CIFAR10_CLASSES, Cifar10
from sepconv.data._image_folder import SPLITS, read_image_folder
from sepconv.data._official import FILES, read_official
from sepconv.data._load_progress import progress_bar

ENV_SOURCE = "SEPCONV_DATA"
# Where keras.datasets.cifar10.load_data() leaves the official release: Keras 3 extracts
# into `cifar-10-batches-py-target/`, Keras 2 used `cifar-10-batches-py/`.
_KERAS_CACHE = (
    "cifar-10-batches-py-target/cifar-10-batches-py",
    "cifar-10-batches-py",
    "cifar-10-batches-py-target_archive",
    "cifar-10-batches-py.tar.gz",
)


def load_cifar10(source=None, *, cache_dir=None, progress=True):
    """Loads CIFAR-10 as uint8 NHWC arrays, from a local copy when there is one.

    The copy is looked for, in order: `source`; the path in the environment variable
    `SEPCONV_DATA`; the keras.datasets cache (`$KERAS_HOME` or `~/.keras`, then
    `datasets/`); finally `keras.datasets.cifar10.load_data()` downloads it.

    A path may be the official python release (`cifar-10-python.tar.gz` or its extracted
    `cifar-10-batches-py/` folder) or an image folder `{train,test}/<class>/<image>` as a
    folder, `.tar`, `.tar.gz`/`.tgz` or `.zip`, optionally inside one top-level folder.
    The format is recognised from the content, not the file name. Archives are read in
    memory, never extracted; unsafe members (absolute paths, `..`, links, devices) are
    refused.

    Decoded arrays are cached as `.npz` in `cache_dir`, keyed by the SHA-256 of the source,
    so later loads skip decoding.

    Args:
        source: path to a CIFAR-10 copy, or None to search as above.
        cache_dir: folder for decoded arrays; defaults to `$SEPCONV_CACHE`, else
            `~/.cache/sepconv`.
        progress: show a progress bar on stderr while reading and decoding.

    Returns:
        A `Cifar10`; its `source` says which copy was read.

    Raises:
        FileNotFoundError: the path does not exist, or nothing is found locally and the
            download fails.
        ValueError: the copy is unsafe, corrupt, or not laid out as CIFAR-10.
    """
    path, found_in = _resolve(source)
    if path is None:
        return _download()
    container = container_of(path)
    where = f"{path} ({container}{found_in})"
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else _cache.default_dir()
    cache_path = _cache.cache_file(cache_dir, _cache.fingerprint(path))
    fields = _cache.load(cache_path)
    if fields is None:
        with progress_bar(progress) as bar:
            fields = _decode(read_tree(path, bar), bar)
        _cache.save(cache_path, **fields)
    what = fields.pop("what")
    return Cifar10(**fields, source=f"{what} at {where}")


def _resolve(source):
    """`(absolute path, note)` of the copy to read, or `(None, "")` to download."""
    if source is not None:
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"source must be a path or None. Received: source={source!r}")
        return _existing(os.fspath(source), "source"), ""
    if os.environ.get(ENV_SOURCE):
        return _existing(os.environ[ENV_SOURCE], ENV_SOURCE), ""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    for candidate in _KERAS_CACHE:
        path = os.path.join(home, "datasets", candidate)
        if os.path.isfile(path) or os.path.isfile(os.path.join(path, "test_batch")):
            return path, ", keras.datasets cache"
    return None, ""


def _existing(path, name):
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(full):
        raise FileNotFoundError(f"CIFAR-10 source does not exist. Received: {name}={path!r}")
    return full


def _layout(tree):
    """`(format, prefix)`: "official" or "image-folder", and the folder holding it."""
    prefix = ""
    while True:
        top = {name[len(prefix) :].split("/")[0] for name in tree.files if name.startswith(prefix)}
        if top & set(SPLITS) and any(f"{prefix}{split}" in tree.dirs for split in SPLITS):
            return "image-folder", prefix
        if top & set(FILES):
            return "official", prefix
        if len(top) == 1 and f"{prefix}{next(iter(top))}" in tree.dirs and prefix.count("/") < 3:
            prefix += next(iter(top)) + "/"
            continue
        raise ValueError(
            "no CIFAR-10 layout found: expected train/ and test/ class folders, or the python "
            f"release files data_batch_1 ... data_batch_5 and test_batch. Received: source={tree.path!r}"
        )


def _decode(tree, bar):
    layout, prefix = _layout(tree)
    if layout == "official":
        arrays = read_official(tree.files, prefix, tree.path, CIFAR10_CLASSES)
        what = "official python-pickle batches"
    else:
        *arrays, formats = read_image_folder(tree, prefix, tree.path, bar)
        what = f"image-folder {'+'.join(formats)} copy"
    names = ("x_train", "y_train", "x_test", "y_test", "class_names")
    return dict(zip(names, arrays), what=what)


def _download():
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:  # keras raises a bare Exception when the fetch fails
        reason = " ".join(str(err).split()) or type(err).__name__
        raise FileNotFoundError(
            f"CIFAR-10 was not found locally and the download failed ({reason}); pass "
            f"source=PATH to a copy or set {ENV_SOURCE}. Received: source=None"
        ) from None
    if x_train.shape[1] == 3:  # keras returns NCHW under image_data_format="channels_first"
        x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
    return Cifar10(
        x_train=np.ascontiguousarray(x_train),
        y_train=y_train.reshape(-1).astype(np.int64),
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test.reshape(-1).astype(np.int64),
        class_names=CIFAR10_CLASSES,
        source="keras.datasets (official)",
    )
