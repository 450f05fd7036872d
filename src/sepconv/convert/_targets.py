"""Which layers of a model convert, and why the others stay as they are.

A layer converts when it is exactly a Keras `Conv1D` or `Conv2D` (not a
subclass, whose `call` may differ) with `groups=1` and a kernel larger than
one tap, and it can be reached by rebuilding the model: the model and every
model nested in it are Functional or Sequential. Other convolution layers
are listed with the reason they stay; non-convolution layers are not listed.
"""

import dataclasses
import fnmatch
import math

import keras

# `clone_model(recursive=True)` opens exactly Sequential and Functional models.
from keras.src.models.functional import Functional

from sepconv.layers import BaseDepthwiseSeparableConv, DepthwiseConv3D

__all__ = ["Selection", "rebuildable", "select_layers"]

_CONVERTIBLE = (keras.layers.Conv1D, keras.layers.Conv2D)
_KNOWN_REASONS = (
    (keras.layers.Conv3D, "Conv3D is not supported (Conv1D and Conv2D only)"),
    (
        (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose),
        "transposed convolution",
    ),
    (
        (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D, BaseDepthwiseSeparableConv),
        "already depthwise separable",
    ),
    (
        (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D, DepthwiseConv3D),
        "depthwise convolution: already one filter per channel",
    ),
)


@dataclasses.dataclass(frozen=True)
class Selection:
    """`convertible`: `(path, layer)` pairs; `skipped`: `(path, layer, reason)`."""

    convertible: tuple
    skipped: tuple


def rebuildable(layer):
    """Whether `clone_model(recursive=True)` rebuilds `layer` layer by layer."""
    return isinstance(layer, (keras.Sequential, Functional))


def _walk(model, prefix, seen):
    """`(path, layer, reachable)` for each layer once, nested models opened."""
    for layer in model.layers:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        path = prefix + layer.name
        if rebuildable(layer):
            yield from _walk(layer, path + "/", seen)
            continue
        yield path, layer, None
        # Private but stable: Keras' own list of a layer's sub-layers.
        for inner in layer._flatten_layers(include_self=False, recursive=True):
            if id(inner) not in seen:
                seen.add(id(inner))
                container = f"{type(layer).__name__} '{layer.name}'"
                yield f"{path}/{inner.name}", inner, container


def _reason(layer):
    """Why a convolution layer stays; `""` if it converts; `None` if not a convolution."""
    if type(layer) in _CONVERTIBLE:
        if layer.groups != 1:
            return f"grouped convolution (groups={layer.groups})"
        if math.prod(layer.kernel_size) == 1:
            return "1x1 kernel: already a pointwise convolution"
        return ""
    for base in _CONVERTIBLE:
        if isinstance(layer, base):
            return f"subclass of {base.__name__}: its call() may differ"
    for classes, reason in _KNOWN_REASONS:
        if isinstance(layer, classes):
            return reason
    return None


def _patterns(value, name):
    if value is None:
        return ()
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{name} must be a string or a list of strings. Received: {name}={value!r}")
    return tuple(values)


def _matches(pattern, path, layer):
    """A glob on the layer's name or path ("block1/conv"), or its exact class name."""
    return (
        fnmatch.fnmatchcase(layer.name, pattern)
        or fnmatch.fnmatchcase(path, pattern)
        or pattern == type(layer).__name__
    )


def select_layers(model, include=None, exclude=None):
    """Sorts the convolution layers of `model` into convertible and skipped.

    Args:
        model: a Functional or Sequential Keras model.
        include: glob pattern(s); if given, only matching layers convert.
        exclude: glob pattern(s); matching layers do not convert.
        A pattern is matched case-sensitively against a layer's name, its path
        through nested models ("encoder/conv1") and its class name ("Conv1D").

    Returns:
        A `Selection`, in the order of `model.layers` (nested models inline).
    """
    include, exclude = _patterns(include, "include"), _patterns(exclude, "exclude")
    layers = list(_walk(model, "", set()))
    for name, patterns in (("include", include), ("exclude", exclude)):
        for pattern in patterns:
            if not any(_matches(pattern, path, layer) for path, layer, _ in layers):
                raise ValueError(
                    f"{name} pattern {pattern!r} matches no layer name, path or class of model "
                    f"'{model.name}'. Received: {name}={pattern!r}"
                )
    convertible, skipped = [], []
    for path, layer, container in layers:
        reason = _reason(layer)
        if reason is None:
            continue
        if reason == "" and container is not None:
            reason = f"inside {container}, which is not a Functional or Sequential model"
        elif reason == "" and include and not any(_matches(p, path, layer) for p in include):
            reason = f"not matched by include={list(include)}"
        elif reason == "":
            excluded_by = [p for p in exclude if _matches(p, path, layer)]
            if excluded_by:
                reason = f"excluded by exclude pattern {excluded_by[0]!r}"
        if reason:
            skipped.append((path, layer, reason))
        else:
            convertible.append((path, layer))
    return Selection(tuple(convertible), tuple(skipped))
