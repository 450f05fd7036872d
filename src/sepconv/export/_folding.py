"""Inference folding: BatchNormalization merged into the kernel and bias before it.

In inference a BatchNormalization computes, per channel,

    y = (x - moving_mean) * s + beta,    s = gamma / sqrt(moving_variance + epsilon)

(Ioffe & Szegedy 2015, Alg. 2; `gamma` = 1 without `scale`, `beta` = 0 without
`center`). When `x = W * input + b` comes from a linear step whose output channel is
the BN's channel, the pair is one linear step:

    W' = W * s (per output channel),    b' = (b - moving_mean) * s + beta

(Jacob et al. 2018, Sec. 3.2, "batch normalization folding"). `fold_batch_norm`
applies it to

- the depthwise and pointwise steps of sepconv's separable layers
  (`depthwise_normalization`, `normalization`: the MobileNet and Xception presets),
  which become the same layer with biases and no normalization;
- a Keras `Conv1D/2D/3D`, `DepthwiseConv1D/2D`, `SeparableConv1D/2D` or `Dense`, or a
  separable layer of sepconv without its own normalization after the pointwise step, with
  no activation and a BatchNormalization on its channel axis as its only consumer (the
  convolution-BN steps of the registry's models; the layers `sepconv convert` made from
  them): the layer gains the folded bias and the BN is removed from the graph.

Other BatchNormalization layers (after an activation, a merge, a shared layer) are
left as they are and counted in the report. Activations are untouched: the BN sits
before them in every arrangement folded here.
"""

import keras
import numpy as np

from sepconv.layers import BaseDepthwiseSeparableConv

_BATCH_NORMS = (keras.layers.BatchNormalization,)  # sepconv's is a subclass
_LINEAR = (
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D, keras.layers.SeparableConv1D, keras.layers.SeparableConv2D, keras.layers.Dense,
)  # fmt: skip


def _assign(variable, value):
    variable.assign(np.asarray(value).astype(keras.backend.standardize_dtype(variable.dtype)))


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable).astype(np.float64)


def batch_norm_affine(bn):
    """`(s, t)` with BN(x) = x * s + t in inference, per channel, in float64."""
    mean, variance = _numpy(bn.moving_mean), _numpy(bn.moving_variance)
    gamma = _numpy(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = _numpy(bn.beta) if bn.center else np.zeros_like(mean)
    s = gamma / np.sqrt(variance + bn.epsilon)
    return s, beta - mean * s


def _fold(kernel, bias, bn, channels_shape):
    """Kernel scaled per output channel (`kernel.reshape(..., *channels_shape)`) and the folded bias."""
    s, t = batch_norm_affine(bn)
    kernel = np.asarray(kernel, np.float64)
    scaled = (kernel.reshape(*kernel.shape[: kernel.ndim - len(channels_shape)], -1) * s).reshape(kernel.shape)
    bias = np.zeros_like(s) if bias is None else np.asarray(bias, np.float64)
    return scaled, bias * s + t


def _channel_axis(layer):
    if isinstance(layer, keras.layers.Dense):
        return -1
    return -1 if getattr(layer, "data_format", "channels_last") == "channels_last" else 1


def _single_call(layer):
    return len(layer._inbound_nodes) == 1


def _foldable_pairs(model):
    """`{id(linear layer): bn}` for Keras linear layers feeding only a BN on their channel axis."""
    pairs = {}
    for bn in model.layers:
        if not isinstance(bn, _BATCH_NORMS) or not _single_call(bn) or bn.renorm or not bn.built:
            continue
        parents = bn._inbound_nodes[0].parent_nodes
        if len(parents) != 1:
            continue
        producer = parents[0].operation
        if not isinstance(producer, (*_LINEAR, BaseDepthwiseSeparableConv)):
            continue
        if isinstance(producer, BaseDepthwiseSeparableConv) and producer.norm is not None:
            continue  # its own BatchNorm follows the pointwise step: this one sits after that
        linear_activation = producer.activation in (None, keras.activations.linear)
        rank = len(producer.output.shape)
        same_axis = bn.axis % rank == _channel_axis(producer) % rank if isinstance(bn.axis, int) else (
            len(bn.axis) == 1 and bn.axis[0] % rank == _channel_axis(producer) % rank
        )
        if (linear_activation and same_axis and _single_call(producer) and len(producer._outbound_nodes) == 1
                and producer.built):  # fmt: skip
            pairs[id(producer)] = bn
    return pairs


def _separable_without_norm(layer, bias=False):
    """`layer`'s config without its BatchNorms, with the biases they fold into (`bias`: a BN after it)."""
    config = layer.get_config()
    config.update(
        depthwise_normalization=None,
        normalization=None,
        depthwise_use_bias=layer.depthwise_use_bias or layer.depthwise_norm is not None,
        use_bias=layer.use_bias or layer.norm is not None or bias,
    )
    return type(layer).from_config(config)


def _fill_separable(old, new, bn=None):
    """`new` gets `old`'s weights with its own BatchNorms and `bn` (the one after it) folded."""
    channels, multiplier = old.depthwise_kernel.shape[-2:]
    depthwise = _numpy(old.depthwise_kernel)
    depthwise_bias = _numpy(old.depthwise_bias) if old.depthwise_bias is not None else None
    if old.depthwise_norm is not None:
        depthwise, depthwise_bias = _fold(depthwise, depthwise_bias, old.depthwise_norm, (channels, multiplier))
    pointwise = _numpy(old.pointwise_kernel)
    bias = _numpy(old.bias) if old.bias is not None else None
    for norm in (old.norm, bn):  # at most one of them: see _foldable_pairs
        if norm is not None:
            pointwise, bias = _fold(pointwise, bias, norm, (old.filters,))
    _assign(new.depthwise_kernel, depthwise)
    _assign(new.pointwise_kernel, pointwise)
    if new.depthwise_bias is not None:
        _assign(new.depthwise_bias, depthwise_bias)
    if new.bias is not None:
        _assign(new.bias, bias)


def _fill_linear(old, new, bn):
    """`new` (old's config with a bias) gets old's weights with `bn` folded into the last kernel."""
    weights = [np.asarray(w, np.float64) for w in old.get_weights()]
    kernel_index = 1 if isinstance(old, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)) else 0
    kernel = weights[kernel_index]
    if isinstance(old, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        channels_shape = kernel.shape[-2:]
    else:
        channels_shape = kernel.shape[-1:]
    bias = weights[kernel_index + 1] if old.use_bias else None
    weights[kernel_index], folded_bias = _fold(kernel, bias, bn, channels_shape)
    weights = weights[: kernel_index + 1] + [folded_bias]
    new.set_weights([w.astype(keras.backend.standardize_dtype(v.dtype)) for w, v in zip(weights, new.weights)])


def float32_model(model):
    """`model` when every layer computes in float32; else its float32 twin with the same weights.

    A mixed-precision model (`mixed_bfloat16`: bfloat16 compute, float32 weights) exports
    as float32: its 16-bit graph would reach ONNX Runtime as casts its convolutions reject
    and LiteRT as ops it lacks. The runtimes' 16-bit and int8 forms come from the export's
    own settings instead.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model._flatten_layers(include_self=False)):
        return model

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    twin = keras.models.clone_model(model, clone_function=clone, recursive=True)
    twin.set_weights(model.get_weights())
    return twin


def fold_batch_norm(model):
    """`(folded model, report)`: `model` with its BatchNormalizations folded (module docstring).

    The folded model computes what `model(x, training=False)` computes (up to float32
    rounding) with fewer layers and no normalization where one could be folded; the
    original is not modified. `report` counts `folded` and `left` BatchNormalizations.

    Args:
        model: a Functional or Sequential Keras model.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a Keras model. Received: model={model!r}")
    pairs = _foldable_pairs(model)
    folded_bns = {id(bn) for bn in pairs.values()}
    made = []
    counts = {"folded": 0, "left": 0}

    def separable_to_fold(layer):
        return isinstance(layer, BaseDepthwiseSeparableConv) and bool(
            layer.depthwise_norm or layer.norm or id(layer) in pairs
        )

    def clone(layer):
        if separable_to_fold(layer):
            new = _separable_without_norm(layer, bias=id(layer) in pairs)
            counts["folded"] += (layer.depthwise_norm is not None) + (layer.norm is not None)
        elif id(layer) in pairs:
            config = layer.get_config()
            config["use_bias"] = True
            new = type(layer).from_config(config)
        elif id(layer) in folded_bns:
            counts["folded"] += 1
            new = layer  # not called: `skip_folded` passes its input through
        elif not layer.variables:
            new = layer
        else:
            if isinstance(layer, _BATCH_NORMS):
                counts["left"] += 1
            new = layer.__class__.from_config(layer.get_config())
        made.append((layer, new))
        return new

    def skip_folded(layer, *args, **kwargs):
        return args[0] if id(layer) in folded_bns else layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=skip_folded, recursive=True)
    for old, new in made:
        if separable_to_fold(old):
            _fill_separable(old, new, pairs.get(id(old)))
        elif id(old) in pairs:
            _fill_linear(old, new, pairs[id(old)])
        elif new is not old:
            new.set_weights(old.get_weights())
    return folded, counts
