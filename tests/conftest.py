import os

import keras
import numpy as np
import pytest

import sepconv.kernels

BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True)
def _fresh_state():
    keras.utils.set_random_seed(0)
    yield
    sepconv.kernels.set_depthwise_implementation("auto")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def shared_cifar10():
    """The offline CIFAR-10 copy named by SEPCONV_DATA, or skip."""
    path = os.environ.get("SEPCONV_DATA")
    if not path or not os.path.exists(path):
        pytest.skip("set SEPCONV_DATA to a CIFAR-10 copy to run this test")
    return path
