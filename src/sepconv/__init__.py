"""sepconv: depthwise separable convolutions made practical, for Keras 3.

The layers are imported on first use, so `sepconv.cli` can quiet the
backend's start-up logging before Keras loads.
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "DepthwiseConv3D",
    "DepthwiseSeparableConv1D",
    "DepthwiseSeparableConv2D",
    "DepthwiseSeparableConv3D",
    "__version__",
]


_SUBPACKAGES = ("analysis", "bench", "convert", "data", "kernels", "layers", "models", "report", "training")


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module("sepconv.layers"), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"sepconv.{name}")
    raise AttributeError(f"module 'sepconv' has no attribute {name!r}")
