"""Helpers shared by the test modules: `from helpers import ...`.

`conftest.py` holds fixtures only; the numpy references live in `reference.py`.
"""

import os

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()
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
