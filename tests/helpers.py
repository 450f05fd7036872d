"""Helpers shared by the test modules: `from helpers import ...`.

`conftest.py` holds fixtures only; the numpy references live in `reference.py`.
"""

import io
import os
import tarfile

import keras
import numpy as np
import pytest
from PIL import Image

BACKEND = keras.backend.backend()
ARCHIVE_CLASSES = ("cat", "dog", "frog")  # of `image_folder_archive`
DATA_FORMATS = ("channels_last", "channels_first")


def to_format(x, data_format):
    """A channels_last array (N, *spatial, C) in `data_format`."""
    return x if data_format == "channels_last" else np.moveaxis(x, -1, 1)


def shared_cifar10():
    """The offline CIFAR-10 copy named by SEPCONV_DATA, or skip."""
    path = os.environ.get("SEPCONV_DATA")
    if not path or not os.path.exists(path):
        pytest.skip("set SEPCONV_DATA to a CIFAR-10 copy to run this test")
    return path


def image_folder_archive(path, train_per_class=6, test_per_class=3):
    """A tiny CIFAR-10-like copy `{train,test}/<class>/<n>.png` as .tar.gz."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as archive:
        for split, count in (("train", train_per_class), ("test", test_per_class)):
            for label, name in enumerate(ARCHIVE_CLASSES):
                for k in range(count):
                    pixels = rng.integers(0, 150, size=(32, 32, 3), dtype=np.uint8)
                    pixels[..., label] += 100
                    buffer = io.BytesIO()
                    Image.fromarray(pixels).save(buffer, format="PNG")
                    info = tarfile.TarInfo(f"{split}/{name}/{k:03d}.png")
                    info.size = buffer.tell()
                    archive.addfile(info, io.BytesIO(buffer.getvalue()))
    return str(path)
