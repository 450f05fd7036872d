"""Wall-clock timing with warm-up, device synchronization and robust statistics."""

import dataclasses
import statistics
import time

import keras

from sepconv import _options, _validation
from sepconv._options import option


def _leaves(value):
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif value is not None:
        yield value


def sync(value):
    """Blocks until every tensor in `value` (nested lists/tuples/dicts) is computed.

    JAX dispatches asynchronously: `block_until_ready`. PyTorch is synchronous
    on CPU; on CUDA, `torch.cuda.synchronize`. TensorFlow: copying one element
    of each result to numpy waits for the op that produced it.
    """
    backend = keras.backend.backend()
    leaves = list(_leaves(value))
    if backend == "jax":
        import jax

        jax.block_until_ready(leaves)
    elif backend == "torch":
        import torch

        if any(getattr(leaf, "is_cuda", False) for leaf in leaves):
            torch.cuda.synchronize()
    else:
        for leaf in leaves:
            if hasattr(leaf, "shape") and len(leaf.shape):
                leaf = leaf[(0,) * len(leaf.shape)]
            leaf.numpy() if hasattr(leaf, "numpy") else keras.ops.convert_to_numpy(leaf)
    return value


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call over repeated, synchronized runs."""

    samples: tuple

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def quartiles(self):
        """(first, third) quartile; (min, max) when there are fewer than 4 samples."""
        if len(self.samples) < 4:
            return min(self.samples), max(self.samples)
        first, _, third = statistics.quantiles(self.samples, n=4, method="inclusive")
        return first, third

    def to_dict(self):
        first, third = self.quartiles
        return {
            "median_ms": self.median * 1e3,
            "q1_ms": first * 1e3,
            "q3_ms": third * 1e3,
            "min_ms": min(self.samples) * 1e3,
            "max_ms": max(self.samples) * 1e3,
            "samples_ms": [s * 1e3 for s in self.samples],
        }


def measure(function, warmup=2, repeats=7):
    """Times `function()`: `warmup` untimed calls (compilation), then `repeats` timed ones.

    Each timed call is synchronized (`sync`) before the clock stops.
    """
    _validation.positive_int(repeats, "repeats")
    for _ in range(warmup):
        sync(function())
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(function())
        samples.append(time.perf_counter() - start)
    return Timing(tuple(samples))


def measure_interleaved(functions, warmup=2, repeats=7):
    """Times several zero-argument callables in alternation, one call each per round.

    Returns `{name: Timing}`. Alternating makes their ratios robust to load
    that drifts during the run (other processes, thermal limits).
    """
    _validation.positive_int(repeats, "repeats")
    for function in functions.values():
        for _ in range(warmup):
            sync(function())
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            sync(function())
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(tuple(values)) for name, values in samples.items()}


def _implementations():
    from sepconv import kernels

    return kernels.available_implementations()


@dataclasses.dataclass
class TimingOptions:
    """The settings every `sepconv bench` measurement shares; a base of the bench configs."""

    batch_size: int = option(128, "samples per call", check=_validation.positive_int, parse=_options.parse_int,
                             metavar="N")  # fmt: skip
    implementation: str = option("auto", "sepconv depthwise implementation (see sepconv.kernels)",
                                 check=_options.one_of(_implementations), metavar="NAME")  # fmt: skip
    warmup: int = option(2, "untimed calls first, compilation included", check=_validation.non_negative_int,
                         parse=_options.parse_int, metavar="N")  # fmt: skip
    repeats: int = option(7, "timed calls per figure", check=_validation.positive_int, parse=_options.parse_int,
                          metavar="N")  # fmt: skip
    matmul_size: int = option(2048, "side of the square matmul giving the machine's peak",
                              check=_validation.positive_int, parse=_options.parse_int, metavar="N")  # fmt: skip
    seed: int = option(0, "fixes the random inputs and weights", check=_validation.non_negative_int,
                       parse=_options.parse_int, metavar="N")  # fmt: skip

    def __post_init__(self):
        _options.validate(self)
