"""The C batch-norm kernel of the PyTorch backend (`sepconv.kernels._native`): build, fallback, numerics."""

import shutil
import warnings

import keras
import numpy as np
import pytest

from autodiff import gradients
from helpers import BACKEND
from sepconv import kernels

pytestmark = pytest.mark.skipif(BACKEND != "torch", reason="the C kernel serves the PyTorch backend")
EPSILON = 1e-3
COMPILER = shutil.which("cc")


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """`_native.library()` built again, into an empty cache folder, and forgotten afterwards."""
    from sepconv.kernels import _native

    monkeypatch.setenv("SEPCONV_CACHE_DIR", str(tmp_path))
    _native.library.cache_clear()
    yield _native.library
    _native.library.cache_clear()


def _keras_step(x, gamma, beta, relu):
    mean, variance = keras.ops.moments(x, [0, 1, 2])
    y = keras.ops.batch_normalization(x, mean, variance, -1, offset=beta, scale=gamma, epsilon=EPSILON)
    return keras.ops.relu(y) if relu else y


@pytest.mark.skipif(COMPILER is None, reason="no C compiler")
def test_builds_once_into_the_cache_folder(fresh_library, tmp_path):
    assert fresh_library() is not None
    built = sorted(p.name for p in tmp_path.iterdir())
    assert len(built) == 1 and built[0].startswith("batch_norm-") and built[0].endswith(".so")
    fresh_library.cache_clear()
    assert fresh_library() is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == built  # loaded, not rebuilt


def test_off_switch_and_a_failed_build_fall_back_to_torch(fresh_library, monkeypatch, tmp_path):
    monkeypatch.setenv("SEPCONV_NATIVE", "0")
    assert fresh_library() is None
    monkeypatch.delenv("SEPCONV_NATIVE")
    fresh_library.cache_clear()
    monkeypatch.setenv("CC", "false")  # answers --version, fails to compile
    with pytest.warns(UserWarning, match="building the C batch-norm kernel failed"):
        assert fresh_library() is None
    assert list(tmp_path.iterdir()) == []  # nothing half-written left
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 3)).astype("float32")
    y, _, _ = kernels.batch_norm_training(keras.ops.convert_to_tensor(x), None, None, -1, EPSILON)
    want = (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + EPSILON)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y), want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(COMPILER is None, reason="no C compiler")
@pytest.mark.parametrize("relu", [False, True])
def test_rows_split_over_threads_match_keras(relu, fresh_library, rng):
    """8,192 positions: two row ranges with torch's two threads; forward and gradients against Keras' ops."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fresh_library() is not None
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = (rng.standard_normal((2, 64, 64, 3)) * 3 + 2).astype("float32")
        gamma = rng.uniform(0.5, 1.5, 3).astype("float32")
        beta = rng.standard_normal(3).astype("float32")
        tensors = [keras.ops.convert_to_tensor(t) for t in (x, gamma, beta)]
        y, mean, variance = kernels.batch_norm_training(*tensors, -1, EPSILON, relu=relu)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mean), x.mean((0, 1, 2)), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variance), x.var((0, 1, 2)), rtol=1e-5, atol=1e-5)
        want = keras.ops.convert_to_numpy(_keras_step(*tensors, relu))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(y), want, rtol=1e-4, atol=1e-4)
        g = rng.standard_normal(x.shape).astype("float32")
        ours = gradients(lambda *t: kernels.batch_norm_training(*t, -1, EPSILON, relu=relu)[0], [x, gamma, beta], g)
        theirs = gradients(lambda *t: _keras_step(*t, relu), [x, gamma, beta], g)
        for got, expected in zip(ours, theirs):
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(COMPILER is None, reason="no C compiler")
@pytest.mark.parametrize("relu", [False, True])
def test_inference_step_matches_keras_and_steps_aside_for_gradients(relu, fresh_library, rng):
    import torch

    x = (rng.standard_normal((2, 64, 64, 3)) * 3 + 2).astype("float32")
    gamma, beta, mean = (rng.standard_normal(3).astype("float32") for _ in range(3))
    variance = rng.uniform(0.5, 2.0, 3).astype("float32")
    tensors = [keras.ops.convert_to_tensor(t) for t in (x, gamma, beta, mean, variance)]
    want = keras.ops.batch_normalization(tensors[0], tensors[3], tensors[4], -1, offset=tensors[2],
                                         scale=tensors[1], epsilon=EPSILON)  # fmt: skip
    want = keras.ops.convert_to_numpy(keras.ops.relu(want) if relu else want)
    with torch.no_grad():
        got = kernels.batch_norm_inference(*tensors, -1, EPSILON, relu=relu)
    assert fresh_library() is not None and got is not None
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-5)
    tensors[0].requires_grad_(True)  # e.g. a frozen BatchNorm inside a model being trained
    assert kernels.batch_norm_inference(*tensors, -1, EPSILON, relu=relu) is None
