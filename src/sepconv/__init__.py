"""sepconv: depthwise separable convolutions made practical, for Keras 3."""

from sepconv.layers import (
    DepthwiseConv3D,
    DepthwiseSeparableConv1D,
    DepthwiseSeparableConv2D,
    DepthwiseSeparableConv3D,
)

__version__ = "0.1.0"

__all__ = [
    "DepthwiseConv3D",
    "DepthwiseSeparableConv1D",
    "DepthwiseSeparableConv2D",
    "DepthwiseSeparableConv3D",
    "__version__",
]
