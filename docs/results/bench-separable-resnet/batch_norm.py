"""Training-mode batch normalization at channel counts that are and are not multiples of 16.

    python docs/results/bench-separable-resnet/batch_norm.py > docs/results/bench-separable-resnet/batch_norm.txt

Forward and backward of `sepconv.layers.BatchNormalization` (on TensorFlow one FusedBatchNormV3 each
way) on 128 maps of 32x32, under the float32 and mixed_bfloat16 policies: the shapes of the first
stage of `separable_resnet` at `channels` 48, 56 and 64. Median ms [quartiles] of 7 calls after 2
warm-up calls, the calls of one row alternating.
"""

import keras
import numpy as np

from sepconv import _provenance
from sepconv.bench import _compiled, _timing
from sepconv.layers import BatchNormalization

CHANNELS = (48, 56, 64)


def step(channels, policy, rng):
    layer = BatchNormalization(dtype=policy)
    x = keras.ops.cast(rng.standard_normal((128, 32, 32, channels)).astype("float32"), layer.compute_dtype)
    layer.build(x.shape)
    return _compiled.forward_backward(layer, x, keras.ops.ones_like(x), training=True)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    commit = _provenance.git_commit() or {"commit": "unknown", "dirty": False}
    tree = f"commit {commit['commit'][:7]}{' (modified)' if commit['dirty'] else ''}"
    print(f"{keras.backend.backend()} on {_provenance.cpu_name()}, keras {keras.version()}, {tree}")
    for policy in ("float32", "mixed_bfloat16"):
        timings = _timing.measure_interleaved({c: step(c, policy, rng) for c in CHANNELS})
        row = ", ".join(f"{c}: {t.median * 1e3:.1f} [{t.quartiles[0] * 1e3:.1f}-{t.quartiles[1] * 1e3:.1f}]"
                        for c, t in timings.items())  # fmt: skip
        print(f"{policy}, channels -> ms: {row}")
