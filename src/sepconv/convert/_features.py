"""Intermediate outputs as extra distillation targets ("hints").

Matching only the logits tells the student where the network should end;
after conversion every separable layer also has a counterpart in the
teacher whose output it approximates, so the loss can say where each layer
should end too (Romero et al., "FitNets", 2015, arXiv:1412.6550, with the
hint at every converted layer; Li et al., CVPR 2020, "Few Sample Knowledge
Distillation", match a compressed network's blocks to the original's the
same way). No adapter is needed: a converted layer keeps its original's
output shape.

The term is the mean over converted layers of the relative squared error on
the batch, ``||s - t||^2 / ||t||^2``: the measure reconstruction reports, and
on the same scale for every layer whatever its activations' magnitude.
"""

import keras

from sepconv.layers import DepthwiseSeparableConv1D, DepthwiseSeparableConv2D

__all__ = ["feature_loss", "feature_pairs", "with_features"]

_SEPARABLE = (DepthwiseSeparableConv1D, DepthwiseSeparableConv2D)


def feature_pairs(student, teacher):
    """`[(student layer, teacher layer)]` for each converted layer at the top level of `student`.

    A converted layer keeps its original's name (`_rewrite.separable_like`) in
    another class; nested models' layers are not reached (their outputs are
    not tensors of the outer graph).
    """
    originals = {layer.name: layer for layer in teacher.layers}
    pairs = [
        (layer, originals[layer.name])
        for layer in student.layers
        if isinstance(layer, _SEPARABLE)
        and layer.name in originals
        and not isinstance(originals[layer.name], _SEPARABLE)
    ]
    if not pairs:
        raise ValueError(
            "feature distillation needs converted layers at the top level of the student model (a separable "
            "layer named as a convolution of the teacher); nested models are not reached. "
            f"Received: model={student.name} with layers {[layer.name for layer in student.layers]}"
        )
    return pairs


def _output(layer):
    try:
        return layer.output
    except (AttributeError, ValueError):  # Keras raises one of these for a shared layer
        raise ValueError(
            f"feature distillation needs layers called once, but layer '{layer.name}' has "
            f"{len(layer._inbound_nodes)} calls. Received: layer={layer.name}"
        ) from None


def with_features(model, layers):
    """A model sharing `model`'s weights that returns `[output, *each layer's output]`."""
    outputs = [model.outputs[0], *[_output(layer) for layer in layers]]
    return keras.Model(model.inputs, outputs, name=f"{model.name}_taps")


def feature_loss(student, teacher):
    """Mean over the pairs of `sum((s - t)^2) / sum(t^2)` over the batch, a scalar."""
    terms = []
    for s, t in zip(student, teacher, strict=True):
        s, t = keras.ops.cast(s, "float32"), keras.ops.cast(t, "float32")
        energy = keras.ops.maximum(keras.ops.sum(keras.ops.square(t)), 1e-12)
        terms.append(keras.ops.sum(keras.ops.square(s - t)) / energy)
    return keras.ops.mean(keras.ops.stack(terms))
