"""The machine's measured ceilings: the peak FLOP/s of a large matmul."""

import keras
import numpy as np

from sepconv.bench import _compiled, _timing


def peak_matmul(size=2048, dtype="float32", warmup=2, repeats=10):
    """Measured FLOP/s of a `size` x `size` matmul (FLOPs = 2 size^3), best of at least 10 calls.

    The best rather than the median: a peak, the machine's compute ceiling.
    """
    repeats = max(repeats, 10)
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)
    timing = _timing.measure(_compiled.matmul(a, b), warmup=warmup, repeats=repeats)
    flops = 2 * size**3
    return {
        "size": size,
        "dtype": dtype,
        "flops": flops,
        "timing": timing.to_dict(),
        "gflops_per_s": flops / min(timing.samples) / 1e9,
    }


def best_peak(*measurements):
    """The fastest of several `peak_matmul` results, with all their timings."""
    best = dict(max(measurements, key=lambda m: m["gflops_per_s"]))
    best["timings"] = [m["timing"] for m in measurements]
    return best
