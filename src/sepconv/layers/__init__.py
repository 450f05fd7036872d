"""Depthwise separable layers for Keras 3 (TensorFlow, JAX and PyTorch)."""

from sepconv.layers import presets
from sepconv.layers._base import BaseDepthwiseSeparableConv, depthwise_initializer_default
from sepconv.layers.depthwise import DepthwiseConv3D
from sepconv.layers.normalization import BatchNormalization
from sepconv.layers.pooling import MaxPooling1D, MaxPooling2D, MaxPooling3D
from sepconv.layers.presets import from_preset, preset_names
from sepconv.layers.separable import (
    DepthwiseSeparableConv1D,
    DepthwiseSeparableConv2D,
    DepthwiseSeparableConv3D,
)

__all__ = [
    "BaseDepthwiseSeparableConv",
    "BatchNormalization",
    "DepthwiseConv3D",
    "DepthwiseSeparableConv1D",
    "DepthwiseSeparableConv2D",
    "DepthwiseSeparableConv3D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "depthwise_initializer_default",
    "from_preset",
    "preset_names",
    "presets",
]
