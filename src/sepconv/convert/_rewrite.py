"""Rebuilding a model with some convolutions replaced, weights carried over.

`keras.models.clone_model(recursive=True)` rebuilds Sequential and
Functional models, nested ones included, calling our function once per leaf
layer (a shared layer stays shared). Layers that hold variables are re-created
from their config and get the original weights; layers without any
(activations, merges, `Lambda`) hold no state and are shared with the
original model; replaced convolutions get the factors.
"""

import contextlib

import keras
import numpy as np

from sepconv.layers import DepthwiseSeparableConv1D, DepthwiseSeparableConv2D

__all__ = ["rebuild", "separable_like"]

_CLASSES = {1: DepthwiseSeparableConv1D, 2: DepthwiseSeparableConv2D}


def separable_like(conv, rank):
    """A depthwise separable layer with `conv`'s arguments and name, multiplier `rank`.

    The conv bias becomes the pointwise bias; there is no depthwise bias.
    The conv's initializer, regularizer and constraint objects are shared
    (they hold no weights). The kernel initializer and regularizer apply to
    both factors (an L2 penalty on the factors is not the penalty on their
    product; it only matters if training continues); `kernel_constraint`
    has no counterpart.
    """
    return _CLASSES[conv.rank](
        filters=conv.filters,
        kernel_size=conv.kernel_size,
        strides=conv.strides,
        padding=conv.padding,
        data_format=conv.data_format,
        dilation_rate=conv.dilation_rate,
        depth_multiplier=rank,
        activation=conv.activation,
        use_bias=conv.use_bias,
        depthwise_use_bias=False,
        depthwise_initializer=conv.kernel_initializer,
        pointwise_initializer=conv.kernel_initializer,
        bias_initializer=conv.bias_initializer,
        depthwise_regularizer=conv.kernel_regularizer,
        pointwise_regularizer=conv.kernel_regularizer,
        bias_regularizer=conv.bias_regularizer,
        activity_regularizer=conv.activity_regularizer,
        bias_constraint=conv.bias_constraint,
        name=conv.name,
        trainable=conv.trainable,
        dtype=conv.dtype_policy,
    )


def _assign(variable, value):
    variable.assign(np.asarray(value).astype(keras.backend.standardize_dtype(variable.dtype)))


@contextlib.contextmanager
def _built_with_zeros(layers):
    """Builds `layers` with zero initial values, then restores their initializers.

    Their weights are overwritten right after building, so random initial
    values would be wasted work (on JAX each new weight shape compiles a
    random-number program); the config keeps the conv's initializers.
    """
    names = ("depthwise_initializer", "pointwise_initializer", "bias_initializer")
    saved = [(layer, name, getattr(layer, name)) for layer in layers for name in names]
    for layer, name, _ in saved:
        setattr(layer, name, keras.initializers.Zeros())
    try:
        yield
    finally:
        for layer, name, value in saved:
            setattr(layer, name, value)


def rebuild(model, replacements):
    """`(new_model, {id(old layer): new layer})` with `replacements` swapped in.

    Args:
        model: a Functional or Sequential model.
        replacements: `{id(old layer): (new layer, depthwise, pointwise)}`;
            the new layer gets the two kernels and the old layer's bias.
    """
    pairs = []

    def clone(layer):
        if id(layer) in replacements:
            new = replacements[id(layer)][0]
        elif not layer.variables:
            new = layer  # nothing to copy: activations, merges, Lambda
        else:
            try:
                new = layer.__class__.from_config(layer.get_config())
            except Exception as error:  # any failure of a third-party from_config
                raise ValueError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) cannot be re-created from its "
                    f"config, so the model cannot be rebuilt: {error}. Received: layer={layer.name}"
                ) from error
        pairs.append((layer, new))
        return new

    with _built_with_zeros([new for new, _, _ in replacements.values()]):
        new_model = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for old, new in pairs:
        if id(old) in replacements:
            _, depthwise, pointwise = replacements[id(old)]
            _assign(new.depthwise_kernel, depthwise)
            _assign(new.pointwise_kernel, pointwise)
            if old.use_bias:
                _assign(new.bias, keras.ops.convert_to_numpy(old.bias))
        elif new is not old:
            new.set_weights(old.get_weights())
    return new_model, {id(old): new for old, new in pairs}
