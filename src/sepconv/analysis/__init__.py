"""Exact parameter, MAC and memory-traffic accounting for Keras 3 models.

Closed-form formulas for one convolution (`conv_params`, `separable_macs`,
`cost_ratio`, ...) and a per-layer profile of any model (`profile_model`).
MACs count the multiply-accumulates of convolution and dense kernels only;
FLOPs = 2 x MACs (see `MAC_CONVENTION`).
"""

from sepconv.analysis._comparison import compare_conv_costs
from sepconv.analysis._counting import MAC_CONVENTION
from sepconv.analysis._formulas import (
    conv_macs,
    conv_output_size,
    conv_params,
    conv_transpose_macs,
    cost_ratio,
    dense_macs,
    depthwise_macs,
    depthwise_params,
    pointwise_macs,
    pointwise_params,
    separable_macs,
    separable_params,
)
from sepconv.analysis._profile import LayerProfile, ModelProfile, profile_model
from sepconv.analysis._render import format_count, render_profile

__all__ = [
    "MAC_CONVENTION",
    "LayerProfile",
    "ModelProfile",
    "compare_conv_costs",
    "conv_macs",
    "conv_output_size",
    "conv_params",
    "conv_transpose_macs",
    "cost_ratio",
    "dense_macs",
    "depthwise_macs",
    "depthwise_params",
    "format_count",
    "pointwise_macs",
    "pointwise_params",
    "profile_model",
    "render_profile",
    "separable_macs",
    "separable_params",
]
