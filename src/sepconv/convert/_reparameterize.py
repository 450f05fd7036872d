"""BatchNorm inside the separable layers while they train, folded into their kernels after.

A converted network has no normalization between its depthwise and pointwise
steps (the original convolution had none to split), and a plain chain such as
the tutorial VGG has none anywhere; one epoch of distillation gains 2.3 points
more with it (docs/results/convert-reconstruct/, README). Structural
reparameterization (Ding et al., "RepVGG", CVPR 2021, arXiv:2101.03697; Vasu et
al., "MobileOne", CVPR 2023) trains a richer block and folds it into the
deployed one: here each separable layer trains as

    depthwise -> BatchNorm -> pointwise -> BatchNorm -> activation

and after training each BatchNorm, in inference mode an affine map per channel
``a * x + b``, is folded away: ``a`` scales the depthwise filters of its
channel (resp. the pointwise kernel's columns), ``b`` joins the depthwise bias
or passes through the pointwise step into its bias. The model keeps its
layers, shapes and parameter count; only its weights change.

Each BatchNorm starts as the identity on the data (statistics of what it
normalizes, scale the standard deviation, offset the mean), so training starts
from the converted network's function: per channel, the statistics of the
batch where it varies least among the images given (`finetune`: the first
1,024 training images, 8 batches; `_statistics` says why).
"""

import keras
import numpy as np

from sepconv import kernels
from sepconv.export import batch_norm_affine
from sepconv.layers import DepthwiseSeparableConv1D, DepthwiseSeparableConv2D

__all__ = ["fold", "reparameterizable", "with_batch_norm"]

_SEPARABLE = (DepthwiseSeparableConv1D, DepthwiseSeparableConv2D)


def reparameterizable(layer):
    """Whether `layer` is a separable layer whose BatchNorms fold back exactly.

    It has none of its own; its pointwise step has a bias (to take the second
    offset); the first offset folds into the depthwise bias, or, without one,
    passes through the pointwise step when nothing nonlinear lies between.
    """
    return (
        isinstance(layer, _SEPARABLE)
        and layer.depthwise_normalization is None
        and layer.normalization is None
        and layer.use_bias
        and (layer.depthwise_use_bias or layer.depthwise_activation in (None, keras.activations.linear))
    )


def with_batch_norm(model, images, batch_size=128):
    """A model computing what `model` does, its top-level separable layers normalized after each step.

    Each BatchNorm starts on `images` seen in batches of `batch_size`, the training batch
    (`_statistics`). Other layers are shared with `model`, not copied, so training the result
    trains them in place. Returns `(normed model, {normed layer: layer of model})`.

    Raises:
        ValueError: when no top-level layer of `model` is `reparameterizable`.
    """
    layers = [layer for layer in model.layers if reparameterizable(layer)]
    if not layers:
        raise ValueError(
            "reparameterize needs DepthwiseSeparableConv1D/2D layers at the top level of the model with a bias "
            f"and no normalization of their own. Received: model={model.name}"
        )
    statistics = _statistics(model, layers, images, batch_size)
    copies = {}

    def clone(layer):
        if layer not in statistics:
            return layer
        config = layer.get_config() | {"depthwise_normalization": "batch", "normalization": "batch"}
        copies[layer] = type(layer).from_config(config)
        return copies[layer]

    normed = keras.models.clone_model(model, clone_function=clone)
    # Assigned from numpy, never variable to variable: on JAX two variables would share
    # one buffer, which a compiled train step refuses to donate twice.
    for layer, copy in copies.items():
        for name in ("depthwise_kernel", "depthwise_bias", "pointwise_kernel", "bias"):
            if getattr(layer, name) is not None:
                getattr(copy, name).assign(keras.ops.convert_to_numpy(getattr(layer, name)))
        for norm, (mean, variance) in zip((copy.depthwise_norm, copy.norm), statistics[layer]):
            mean, variance = keras.ops.convert_to_numpy(mean), keras.ops.convert_to_numpy(variance)
            norm.moving_mean.assign(mean)
            norm.moving_variance.assign(variance)
            norm.gamma.assign(np.sqrt(variance + norm.epsilon))
            norm.beta.assign(mean.copy())
    return normed, {copy: layer for layer, copy in copies.items()}


def _statistics(model, layers, images, batch_size=128):
    """`{layer: ((mean, variance) after its depthwise step, after its pointwise step)}` on `images`.

    Per channel, those of the batch of `batch_size` where the channel varies least. Training
    normalizes each batch by its own statistics, then scales it by the starting ones, so a
    BatchNorm started from one batch is the identity on that batch only. In a network without
    normalization a few images can carry most of a channel's variance (in the rank-1 tutorial
    VGG's last layer one batch in ten has 38x the typical batch's standard deviation or more). A
    start from such a batch, or from moments pooled over it, amplifies the channel on every
    other batch, and derailed a distillation epoch (README); a start from the calmest batch errs
    the other way, damping the channel on the outlier batches only.
    """
    features = keras.Model(model.inputs, [layer.input for layer in layers])
    moments = {layer: ([], []) for layer in layers}  # per step: the (mean, variance) of each batch
    for start in range(0, len(images), batch_size):
        inputs = features(images[start : start + batch_size], training=False)
        for layer, x in zip(layers, inputs if len(layers) > 1 else [inputs]):
            channel = layer._channel_axis % len(x.shape)
            axes = [axis for axis in range(len(x.shape)) if axis != channel]
            middle = layer._depthwise(x)
            if layer.depthwise_bias is not None:
                middle = kernels.add_bias(middle, layer.depthwise_bias, layer.data_format)
            activated = middle if layer.depthwise_activation is None else layer.depthwise_activation(middle)
            output = kernels.pointwise_conv(activated, layer.pointwise_kernel, layer.data_format, bias=layer.bias)
            for step, t in zip(moments[layer], (middle, output)):
                step.append([keras.ops.convert_to_numpy(m) for m in keras.ops.moments(t, axes)])
    return {layer: tuple(_calmest(*map(np.stack, zip(*step))) for step in steps) for layer, steps in moments.items()}


def _calmest(means, variances):
    """Per channel, the mean and variance of the batch (row) where the variance is least."""
    rows, channels = np.argmin(variances, axis=0), np.arange(variances.shape[1])
    return means[rows, channels], variances[rows, channels]


def fold(layers):
    """Writes each normed layer's inference function into its plain layer (`with_batch_norm`'s mapping)."""
    for copy, layer in layers.items():
        weights = {name: keras.ops.convert_to_numpy(getattr(copy, name)).astype("float64")
                   for name in ("depthwise_kernel", "depthwise_bias", "pointwise_kernel", "bias")
                   if getattr(copy, name) is not None}  # fmt: skip
        (a1, b1), (a2, b2) = batch_norm_affine(copy.depthwise_norm), batch_norm_affine(copy.norm)
        depthwise = weights["depthwise_kernel"]  # (*kernel_size, channels, multiplier): channel c * M + m
        weights["depthwise_kernel"] = depthwise * a1.reshape(depthwise.shape[-2:])
        pointwise = weights["pointwise_kernel"]  # (*ones, middle, filters)
        if "depthwise_bias" in weights:
            weights["depthwise_bias"] = a1 * weights["depthwise_bias"] + b1
        else:  # linear between the steps: the offset passes through the pointwise step
            weights["bias"] = weights["bias"] + b1 @ pointwise.reshape(pointwise.shape[-2:])
        weights["pointwise_kernel"] = pointwise * a2
        weights["bias"] = a2 * weights["bias"] + b2
        for name, value in weights.items():
            getattr(layer, name).assign(value.astype(getattr(layer, name).dtype))
