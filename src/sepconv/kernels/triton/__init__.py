"""Triton kernels for depthwise (and fused depthwise separable) convolution.

torch tensors on CUDA, channels-last memory; on a machine without a GPU they
run under Triton's interpreter (`TRITON_INTERPRET=1`, set before the first
kernel function is used), which is how the tests check them. Needs torch and
triton, not Keras.

The kernel functions load lazily: `is_available()` imports nothing, so a
selection rule can ask it on any backend.
"""

import importlib
import importlib.util
import sys

__all__ = ["depthwise_conv2d", "depthwise_conv_triton", "is_available", "separable_conv2d"]
_LAZY = ("depthwise_conv2d", "depthwise_conv_triton", "separable_conv2d")


def is_available():
    """True when torch and triton can be imported in this process.

    False when TensorFlow is loaded and Triton is not yet: Triton's LLVM,
    loaded after TensorFlow's, aborts the process (duplicate LLVM options).
    The other order works.
    """
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        return False
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "triton"))


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module("sepconv.kernels.triton._autograd"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
