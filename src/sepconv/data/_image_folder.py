"""An image-folder copy of CIFAR-10: `train/<class>/<image>` and `test/<class>/<image>`.

Labels are the indices of the sorted class-folder names (for CIFAR-10 this is the
official order). Within a split, images are ordered by label, then by file name, so the
arrays do not depend on the order of members in an archive. Every image is decoded with
Pillow to 32x32 RGB; any other size is an error, never a silent resize.
"""

import io

import numpy as np
from PIL import Image

SPLITS = ("train", "test")
_SIZE = (32, 32)


def _class_folders(tree, prefix, split, source):
    """`{class name: sorted image paths}` for one split."""
    base = f"{prefix}{split}/"
    classes = {}
    for d in tree.dirs:
        if d.startswith(base) and "/" not in d[len(base) :]:
            classes.setdefault(d[len(base) :], [])
    for name in tree.files:
        if not name.startswith(base):
            continue
        parts = name[len(base) :].split("/")
        if len(parts) != 2:
            raise ValueError(
                f"unexpected file {name!r}: expected {split}/<class>/<image>. Received: source={source!r}"
            )
        classes.setdefault(parts[0], []).append(name)
    for label, names in classes.items():
        if not names:
            raise ValueError(f"class folder '{split}/{label}' has no images. Received: source={source!r}")
        names.sort()
    return classes


def _decode(data, name, source):
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError... on bad data
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"cannot decode image {name!r} ({reason}). Received: source={source!r}") from None
    if image.size != _SIZE:
        raise ValueError(
            f"image {name!r} is {image.size[0]}x{image.size[1]}, expected 32x32. Received: source={source!r}"
        )
    image_format = image.format
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image), image_format


def read_image_folder(tree, prefix, source, bar):
    """Decodes the image folder found at `prefix` in `tree`.

    Returns `(x_train, y_train, x_test, y_test, class_names, image_formats)`.
    """
    folders = {}
    for split in SPLITS:
        if f"{prefix}{split}" not in tree.dirs:
            raise ValueError(
                f"missing split {split!r}: expected folders train/ and test/ with one folder per "
                f"class. Received: source={source!r}"
            )
        folders[split] = _class_folders(tree, prefix, split, source)
    train_only = sorted(set(folders["train"]) - set(folders["test"]))
    test_only = sorted(set(folders["test"]) - set(folders["train"]))
    if train_only or test_only:
        raise ValueError(
            f"class folders differ between train and test (only in train: {train_only}, only in "
            f"test: {test_only}). Received: source={source!r}"
        )
    class_names = tuple(sorted(folders["train"]))
    if not class_names:
        raise ValueError(f"train/ has no class folders. Received: source={source!r}")

    formats = set()
    arrays = []
    for split in SPLITS:
        names = [n for label in class_names for n in folders[split][label]]
        counts = [len(folders[split][c]) for c in class_names]
        labels = np.repeat(np.arange(len(class_names), dtype=np.int64), counts)
        x = np.empty((len(names), *_SIZE, 3), dtype=np.uint8)
        task = bar.add_task(f"Decoding {split} images", total=len(names))
        for i, name in enumerate(names):
            x[i], image_format = _decode(tree.files[name], name, source)
            formats.add(image_format)
            if i % 1000 == 0:
                bar.update(task, completed=i)
        bar.update(task, completed=len(names))
        arrays += [x, labels]
    return (*arrays, class_names, tuple(sorted(formats)))
