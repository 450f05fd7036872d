"""Launch configurations and shape-keyed autotuning for the Triton kernels.

On a GPU each kernel is autotuned (`triton.autotune`) over a few block sizes,
once per distinct shape key. Two cases run one fixed configuration instead:

* the interpreter (`TRITON_INTERPRET=1`), which ignores performance;
* `SEPCONV_TRITON_AUTOTUNE=0`, for quick correctness runs on a GPU, where
  benchmarking every configuration for every new shape would dominate.

Tests pass `config=` explicitly to run each configuration of a kernel.
"""

import os

import triton


def interpreting():
    """True when Triton runs kernels in its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def autotune_enabled():
    return not interpreting() and os.environ.get("SEPCONV_TRITON_AUTOTUNE", "1") != "0"


def _config(num_warps=4, num_stages=2, **blocks):
    return triton.Config(blocks, num_warps=num_warps, num_stages=num_stages)


# Pixel x channel tiles; channels are the contiguous (coalesced) axis.
# The first entry is the default (no autotuning).
DIRECT_CONFIGS = [
    _config(BLOCK_P=32, BLOCK_C=64),
    _config(BLOCK_P=64, BLOCK_C=32),
    _config(BLOCK_P=64, BLOCK_C=64),
    _config(BLOCK_P=128, BLOCK_C=32),
    _config(BLOCK_P=16, BLOCK_C=128),
    _config(BLOCK_P=128, BLOCK_C=64, num_warps=8),
]

# Weight gradient: the accumulator is BLOCK_T x BLOCK_C (taps x channels);
# each pixel chunk is BLOCK_P x BLOCK_C.
WEIGHT_GRAD_CONFIGS = [
    _config(BLOCK_P=32, BLOCK_C=64),
    _config(BLOCK_P=64, BLOCK_C=32),
    _config(BLOCK_P=64, BLOCK_C=64),
    _config(BLOCK_P=128, BLOCK_C=32),
    _config(BLOCK_P=32, BLOCK_C=128, num_warps=8),
]

# Fused depthwise -> pointwise: (pixels, mid channels per step, filters).
# tl.dot needs every block dimension >= 16. Each of the KH*KW tap loads of a
# BLOCK_P x BLOCK_K tile is software-pipelined through shared memory, so large
# tiles run out of it: (128, 64, 128) with 3 stages asked an H200 for 693 KB
# of its 227 KB (tools/gpucheck.py) and is not offered.
FUSED_CONFIGS = [
    _config(BLOCK_P=64, BLOCK_K=32, BLOCK_F=64),
    _config(BLOCK_P=64, BLOCK_K=64, BLOCK_F=64),
    _config(BLOCK_P=128, BLOCK_K=32, BLOCK_F=64, num_warps=8),
    _config(BLOCK_P=64, BLOCK_K=32, BLOCK_F=128, num_warps=8),
]


class Launcher:
    """Runs a `@triton.jit` kernel autotuned on a GPU, fixed otherwise.

    `grid` is a function of the launch meta-parameters (block sizes), as
    `triton.autotune` requires; `key` names the kernel arguments whose values
    select a cached tuning result.
    """

    def __init__(self, kernel, configs, key):
        self.kernel = kernel
        self.configs = list(configs)
        self.key = list(key)
        self._tuned = None

    def __call__(self, grid, *args, config=None, **kwargs):
        if config is None and autotune_enabled():
            if self._tuned is None:
                self._tuned = triton.autotune(configs=self.configs, key=self.key)(self.kernel)
            self._tuned[grid](*args, **kwargs)
            return
        config = self.configs[0] if config is None else config
        self.kernel[grid](
            *args, **kwargs, **config.kwargs, num_warps=config.num_warps, num_stages=config.num_stages
        )
