"""Which converted layers feed a ReLU, and through what affine map (for the ReLU rounds).

A layer's output reaches a ReLU as ``relu(scale * y + shift)`` of its
pre-activation ``y`` when the ReLU is its own activation, a plain ReLU layer
right after it, or a BatchNormalization in inference (moving statistics) and
then a plain ReLU layer, each the only consumer of what comes before and none
of them a model output. Only the graph of the model being converted counts (a
layer also keeps the nodes of every other model it was called in), so a
truncated copy or a Sequential rebuilt layer by layer is read correctly.
"""

import keras
import numpy as np

from sepconv.layers import BatchNormalization

__all__ = ["relu_inputs"]

_NORMS = (keras.layers.BatchNormalization, BatchNormalization)


def _graph(model, keys=None, outputs=None):
    """Node keys (as Keras' `make_node_key`) and output tensor ids of `model` and its nested models."""
    keys, outputs = set() if keys is None else keys, set() if outputs is None else outputs
    graph = model._functional if isinstance(model, keras.Sequential) else model
    if graph is None or not hasattr(graph, "_nodes"):
        return keys, outputs
    keys.update(graph._nodes)
    outputs.update(id(x) for x in graph.outputs)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _graph(layer, keys, outputs)
    return keys, outputs


def _key(node):
    return f"{id(node.operation)}_ib-{node.operation._inbound_nodes.index(node)}"


def _only_consumer(layer, graph):
    """The one layer of the graph that takes `layer`'s output (called once there), or None."""
    keys, outputs = graph
    calls = [node for node in layer._inbound_nodes if _key(node) in keys]
    if len(calls) != 1 or any(id(x) in outputs for x in calls[0].outputs):
        return None
    consumers = [node for node in layer._outbound_nodes if _key(node) in keys]
    return consumers[0].operation if len(consumers) == 1 else None


def _is_plain_relu(layer):
    if type(layer) is keras.layers.ReLU:
        return layer.max_value is None and not layer.negative_slope and not layer.threshold
    return type(layer) is keras.layers.Activation and layer.activation is keras.activations.relu


def _numpy(x):
    return keras.ops.convert_to_numpy(x).astype(np.float64)


def _relu_input(layer, graph):
    keys, _ = graph
    if len([node for node in layer._inbound_nodes if _key(node) in keys]) != 1:
        return None  # a shared layer: one call's inputs may depend on its own weights
    identity = np.ones(layer.filters), np.zeros(layer.filters)
    activation = getattr(layer, "activation", None)
    if activation is keras.activations.relu:
        return identity
    if activation is not keras.activations.linear:
        return None
    norm = _only_consumer(layer, graph)
    if _is_plain_relu(norm):
        return identity
    rank = len(layer.kernel_size) + 2
    channel_axis = rank - 1 if layer.data_format == "channels_last" else 1
    if type(norm) not in _NORMS or norm.axis % rank != channel_axis or not _is_plain_relu(_only_consumer(norm, graph)):
        return None
    scale = 1.0 / np.sqrt(_numpy(norm.moving_variance) + norm.epsilon)
    if norm.scale:
        scale = scale * _numpy(norm.gamma)
    shift = -_numpy(norm.moving_mean) * scale
    if norm.center:
        shift = shift + _numpy(norm.beta)
    return scale, shift


def relu_inputs(model, layers):
    """`{id(layer): (scale, shift) or None}`: per filter, what the ReLU after each layer sees."""
    graph = _graph(model)
    return {id(layer): _relu_input(layer, graph) for layer in layers}
