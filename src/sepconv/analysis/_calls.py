"""Every layer call of a model, with its concrete input and output shapes.

Two ways to find them:

* graph walk (functional and sequential models): each node of the model's
  operation graph is one call, with the shapes of its symbolic tensors (the
  unknown batch dimension is filled with `batch_size`). Nested functional or
  sequential models are walked in turn; a shared layer has one node per call.
* trace (subclassed models, other input shapes, layers built from
  sub-layers): one eager forward pass on zeros while `keras.layers.Layer`'s
  `__call__` is temporarily wrapped to record each call; the original is
  restored in `finally`.

The result is a flat list of `Call`s in execution order. A call of a layer
`counting.is_known` recognises is a leaf (its sub-layer calls, if any, are
not listed again). An unknown layer that called sub-layers is a container:
its sub-layer calls are listed under its path, and it appears itself only if
it owns weights of its own (as a not-counted call).
"""

import dataclasses
import threading

import keras

from sepconv.analysis import _counting

__all__ = ["Call", "UnknownShapeError", "graph_of", "graph_calls", "trace_calls"]

_NON_INPUT_KWARGS = ("mask", "training")


class UnknownShapeError(ValueError):
    """A symbolic shape has an unknown dimension other than the batch."""


@dataclasses.dataclass
class Call:
    """One call of a layer or operation.

    `inputs`/`outputs` are lists of ``(shape, dtype)``; `variables` are the
    weights this call may claim (the first call to claim a variable counts
    its parameters); `own_weights_only` marks the row of a container, which
    counts its own weights but no MACs or activation bytes.
    """

    layer: object
    path: str
    inputs: list
    outputs: list
    variables: list
    own_weights_only: bool = False


def graph_of(layer):
    """The `Functional` graph behind `layer`, or `None` if it has none."""
    if isinstance(layer, keras.Sequential):
        return layer._functional
    if isinstance(layer, keras.Model) and getattr(layer, "_nodes_by_depth", None) is not None:
        return layer
    return None


def _weights(layer):
    return list(layer.weights) if isinstance(layer, keras.layers.Layer) else []


def _own_weights(layer):
    inner = {id(w) for sub in layer._flatten_layers(include_self=False) for w in sub.weights}
    return [w for w in layer.weights if id(w) not in inner]


def _symbolic_spec(tensor, batch_size, path):
    shape = list(tensor.shape)
    if shape and shape[0] is None:
        shape[0] = batch_size
    if any(dim is None for dim in shape):
        raise UnknownShapeError(f"layer '{path}' has a tensor of shape {tuple(tensor.shape)}")
    return tuple(shape), keras.backend.standardize_dtype(tensor.dtype)


def _same_input_shapes(graph, tensors):
    if len(graph.inputs) != len(tensors):
        return False
    return all(
        None not in inner.shape[1:] and tuple(inner.shape[1:]) == tuple(outer.shape[1:])
        for inner, outer in zip(graph.inputs, tensors)
    )


def _is_composite(layer):
    return (
        isinstance(layer, keras.layers.Layer)
        and not _counting.is_known(layer)
        and bool(layer._flatten_layers(include_self=False, recursive=False))
    )


def graph_calls(graph, batch_size, prefix=""):
    """Calls of a functional graph, in execution order (nested graphs walked)."""
    calls = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            operation = node.operation
            if node.is_input or isinstance(operation, keras.layers.InputLayer):
                continue
            path = prefix + operation.name
            inputs = [_symbolic_spec(t, batch_size, path) for t in node.input_tensors]
            outputs = [_symbolic_spec(t, batch_size, path) for t in node.outputs]
            inner = graph_of(operation)
            if inner is not None and _same_input_shapes(inner, node.input_tensors):
                own = _own_weights(operation)
                if own:
                    calls.append(Call(operation, path, inputs, outputs, own, own_weights_only=True))
                calls.extend(graph_calls(inner, batch_size, prefix=path + "/"))
            elif inner is not None or _is_composite(operation):
                calls.extend(_trace_node(node, path, batch_size))
            else:
                calls.append(Call(operation, path, inputs, outputs, _weights(operation)))
    return calls


def _trace_node(node, path, batch_size):
    values = {}
    for tensor in node.input_tensors:
        shape, dtype = _symbolic_spec(tensor, batch_size, path)
        values[id(tensor)] = keras.ops.zeros(shape, dtype=dtype)
    args, kwargs = node.arguments.fill_in(values)
    return _record(node.operation, path, args, kwargs)


def trace_calls(layer, input_shapes, batch_size, dtype=None):
    """Calls made by one eager forward pass of `layer` on zeros.

    `input_shapes` is a list of shapes without the batch dimension (one per
    model input).
    """
    dtype = dtype or layer.input_dtype
    zeros = [keras.ops.zeros((batch_size,) + tuple(shape), dtype=dtype) for shape in input_shapes]
    inputs = zeros[0] if len(zeros) == 1 else zeros
    unbuilt = [sub for sub in layer._flatten_layers() if not sub.built]
    if unbuilt:
        layer(inputs)  # Build first, so that build-time symbolic calls are not recorded.
    return _record(layer, "", (inputs,), {})


@dataclasses.dataclass
class _Frame:
    layer: object
    inputs: list
    outputs: list = dataclasses.field(default_factory=list)
    children: list = dataclasses.field(default_factory=list)


def _is_tensor(value):
    return isinstance(value, keras.KerasTensor) or keras.ops.is_tensor(value)


def _tensor_specs(structure):
    specs = []
    for value in keras.tree.flatten(structure):
        if _is_tensor(value):
            shape = tuple(None if dim is None else int(dim) for dim in value.shape)
            specs.append((shape, keras.backend.standardize_dtype(value.dtype)))
    return specs


def _call_inputs(args, kwargs):
    tensor_kwargs = {
        key: value
        for key, value in kwargs.items()
        if key not in _NON_INPUT_KWARGS and not key.endswith("_mask")
    }
    return (args, tensor_kwargs)


def _record(layer, path, args, kwargs):
    """Calls `layer(*args, **kwargs)` eagerly, recording every layer call."""
    thread = threading.get_ident()
    stack, roots = [], []
    original = keras.layers.Layer.__dict__["__call__"]

    def recording_call(self, *call_args, **call_kwargs):
        structure = _call_inputs(call_args, call_kwargs)
        symbolic = any(isinstance(v, keras.KerasTensor) for v in keras.tree.flatten(structure))
        if threading.get_ident() != thread or symbolic:
            return original(self, *call_args, **call_kwargs)
        frame = _Frame(self, _tensor_specs(structure))
        (stack[-1].children if stack else roots).append(frame)
        stack.append(frame)
        try:
            outputs = original(self, *call_args, **call_kwargs)
        finally:
            stack.pop()
        frame.outputs = _tensor_specs(outputs)
        return outputs

    keras.layers.Layer.__call__ = recording_call
    try:
        layer(*args, **kwargs)
    finally:
        keras.layers.Layer.__call__ = original
    calls = []
    for frame in roots:
        _emit(frame, path, calls)
    return calls


def _emit(frame, path, calls):
    layer = frame.layer
    name = path or layer.name
    if _counting.is_known(layer) or not frame.children:
        calls.append(Call(layer, name, frame.inputs, frame.outputs, _weights(layer)))
        return
    own = _own_weights(layer)
    if own:
        calls.append(Call(layer, name, frame.inputs, frame.outputs, own, own_weights_only=True))
    for child in frame.children:
        _emit(child, f"{path}/{child.layer.name}" if path else child.layer.name, calls)
