"""sepconv: depthwise separable convolutions made practical, for Keras 3.

Importing the package registers its layers, losses and metrics with Keras, so `.keras`
files that use them load with `keras.saving.load_model` after `import sepconv`.
"""

from sepconv import analysis, kernels, layers, losses, metrics, models
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
    "analysis",
    "kernels",
    "layers",
    "losses",
    "metrics",
    "models",
]
