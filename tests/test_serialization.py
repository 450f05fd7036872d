"""A model saved under one backend loads and computes the same under the others."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import sepconv
from helpers import BACKEND

LOAD_SCRIPT = """
import sys, numpy as np, keras, sepconv
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(x)))
"""


@pytest.mark.skipif(BACKEND != "tensorflow", reason="spawns the other backends once, from the default one")
@pytest.mark.parametrize("other", ["jax", "torch"])
def test_saved_model_loads_under_another_backend(other, tmp_path, rng):
    inputs = keras.Input((12, 12, 3))
    x = sepconv.layers.presets.mobilenet(8, 3, strides=2, padding="same", depth_multiplier=2)(inputs)
    x = sepconv.DepthwiseSeparableConv2D(4, (3, 1), dilation_rate=2, padding="same", depthwise_use_bias=True)(x)
    model = keras.Model(inputs, x)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.weights])
    # Variances must stay positive for BatchNormalization.
    model.set_weights([np.abs(w) if "variance" in v.path else w for w, v in zip(model.get_weights(), model.weights)])
    x = rng.normal(size=(2, 12, 12, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": other}
    subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        env=env,
        check=True,
        capture_output=True,
    )
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-4, atol=1e-5)
