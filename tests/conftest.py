"""Fixtures for every test. Shared helpers are in `helpers.py`, numpy references in `reference.py`."""

import keras
import numpy as np
import pytest

import sepconv.kernels


@pytest.fixture(autouse=True)
def _fresh_state():
    keras.utils.set_random_seed(0)
    yield
    sepconv.kernels.set_depthwise_implementation("auto")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
