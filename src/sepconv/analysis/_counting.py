"""MACs of one layer call, from the layer and its input/output shapes.

Convention (the one every number in `sepconv.analysis` follows): MACs count
the multiply-accumulates of convolution and dense kernels only. Bias adds,
normalization, activations, pooling, padding, reshapes and elementwise merges
count 0 MACs. A layer this module does not recognise gets `None` ("not
counted"), never a silent 0. Shapes include the batch dimension.

Layers are recognised by type (Keras `Dense`, `EinsumDense`, `Conv1D/2D/3D`,
`DepthwiseConv1D/2D`, `Conv1D/2D/3DTranspose`) or by duck typing: any layer
with a `depthwise_kernel` and a `pointwise_kernel` is a depthwise separable
convolution (Keras `SeparableConv1D/2D` and sepconv's own layers alike), any
layer with a `depthwise_kernel` alone a depthwise convolution (sepconv's
`DepthwiseConv3D`). Depthwise kernels have shape
``kernel_size + (in_channels, depth_multiplier)``.
"""

import math

import keras

from sepconv.analysis import _formulas

__all__ = ["MAC_CONVENTION", "call_macs", "is_known"]

MAC_CONVENTION = (
    "MACs count the multiply-accumulates of convolution and dense kernels only; "
    "bias adds, normalization, activations, pooling, padding, reshapes and "
    "elementwise merges count 0. FLOPs = 2 x MACs."
)

_ZERO_MAC_LAYER_NAMES = (
    "InputLayer BatchNormalization LayerNormalization GroupNormalization "
    "UnitNormalization RMSNormalization Activation ReLU LeakyReLU PReLU ELU Softmax "
    "MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D "
    "AveragePooling3D GlobalAveragePooling1D GlobalAveragePooling2D "
    "GlobalAveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D "
    "AdaptiveAveragePooling2D AdaptiveMaxPooling2D Add Subtract Multiply Average "
    "Maximum Minimum Concatenate Reshape Flatten Permute RepeatVector ZeroPadding1D "
    "ZeroPadding2D ZeroPadding3D Cropping1D Cropping2D Cropping3D UpSampling1D "
    "UpSampling2D UpSampling3D Dropout SpatialDropout1D SpatialDropout2D "
    "SpatialDropout3D GaussianDropout GaussianNoise AlphaDropout Rescaling "
    "Normalization Identity Masking Resizing CenterCrop ActivityRegularization"
).split()
_ZERO_MAC_LAYERS = tuple(
    getattr(keras.layers, name) for name in _ZERO_MAC_LAYER_NAMES if hasattr(keras.layers, name)
)

# Elementwise and shape operations (`keras.ops`) that appear as graph nodes
# when a functional model applies them to symbolic tensors (`x + y`).
_ZERO_MAC_OPS = frozenset(
    "Add Subtract Multiply Divide TrueDivide Negative Absolute Maximum Minimum "
    "Power Square Sqrt Exp Log Clip Where Reshape Transpose Concatenate Stack "
    "Squeeze ExpandDims Cast GetItem Pad Tile Repeat BroadcastTo Identity Mean Sum "
    "Max Min Relu Relu6 Sigmoid Silu Gelu Tanh Softmax HardSigmoid HardSilu".split()
)

_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_KERAS_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_CONV_TRANSPOSES = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


def _is_depthwise(layer):
    return hasattr(layer, "depthwise_kernel") or isinstance(layer, _KERAS_DEPTHWISE)


def _is_keras_op(operation):
    return not isinstance(operation, keras.layers.Layer) and type(operation).__module__.startswith(
        "keras.src.ops"
    )


def is_known(operation):
    """Whether `call_macs` knows the MACs of `operation` (0 included)."""
    if _is_keras_op(operation):
        return type(operation).__name__ in _ZERO_MAC_OPS
    return _is_depthwise(operation) or isinstance(
        operation,
        _CONVS + _CONV_TRANSPOSES + _ZERO_MAC_LAYERS + (keras.layers.Dense, keras.layers.EinsumDense),
    )


def _spatial_and_channels(shape, data_format):
    """Splits ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``."""
    if data_format == "channels_first":
        return shape[0], tuple(shape[2:]), shape[1]
    return shape[0], tuple(shape[1:-1]), shape[-1]


def _einsum_macs(layer, input_shape, output_shape):
    """``prod(output) * prod(contracted sizes)``: one MAC per loop iteration."""
    inputs, rest = layer.equation.split(",")
    kernel_spec, output_spec = rest.split("->")
    sizes = dict(zip(kernel_spec, layer.kernel.shape))
    before, _, after = inputs.partition("...")
    sizes.update(zip(before, input_shape))
    if after:
        sizes.update(zip(after, input_shape[len(input_shape) - len(after) :]))
    contracted = set(inputs.replace(".", "") + kernel_spec) - set(output_spec)
    return math.prod(output_shape) * math.prod(sizes[letter] for letter in contracted)


def call_macs(layer, input_shapes, output_shapes):
    """MACs of one call of `layer`, or `None` if the layer is not known.

    `input_shapes`/`output_shapes` are lists of concrete shapes (batch
    included); the first of each is the layer's main input/output.
    """
    if not is_known(layer):
        return None
    if _is_keras_op(layer) or isinstance(layer, _ZERO_MAC_LAYERS):
        return 0
    input_shape, output_shape = tuple(input_shapes[0]), tuple(output_shapes[0])
    data_format = getattr(layer, "data_format", "channels_last")
    if _is_depthwise(layer):
        kernel = layer.kernel if isinstance(layer, _KERAS_DEPTHWISE) else layer.depthwise_kernel
        depthwise = tuple(kernel.shape)  # kernel_size + (in, multiplier)
        kernel, (in_channels, multiplier) = depthwise[:-2], depthwise[-2:]
        batch, spatial, _ = _spatial_and_channels(output_shape, data_format)
        macs = _formulas.depthwise_macs(in_channels, kernel, spatial, multiplier)
        if hasattr(layer, "pointwise_kernel"):
            filters = tuple(layer.pointwise_kernel.shape)[-1]
            macs += _formulas.pointwise_macs(in_channels * multiplier, filters, spatial)
        return batch * macs
    if isinstance(layer, _CONV_TRANSPOSES):
        batch, spatial, in_channels = _spatial_and_channels(input_shape, data_format)
        return batch * _formulas.conv_transpose_macs(in_channels, layer.filters, layer.kernel_size, spatial)
    if isinstance(layer, _CONVS):
        batch, spatial, _ = _spatial_and_channels(output_shape, data_format)
        in_channels = _spatial_and_channels(input_shape, data_format)[2]
        return batch * _formulas.conv_macs(
            in_channels, layer.filters, layer.kernel_size, spatial, groups=layer.groups
        )
    if isinstance(layer, keras.layers.Dense):
        positions = math.prod(output_shape[:-1])
        return _formulas.dense_macs(input_shape[-1], output_shape[-1], positions)
    return _einsum_macs(layer, input_shape, output_shape)
