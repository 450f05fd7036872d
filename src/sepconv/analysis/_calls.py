"""Every layer call of a model, with its concrete input and output shapes.

Two ways to find them:

* graph walk (functional and sequential models): each node of the model's
  operation graph is one call, with the shapes of its symbolic tensors (the
  unknown batch dimension is filled with `batch_size`). Nested functional or
  sequential models are walked in turn; a shared layer has one node per call.
  For another input shape, symbolic shapes are propagated through the nodes.
* trace (subclassed models, and layers built from sub-layers inside a
  graph): one eager forward pass on zeros while `keras.layers.Layer`'s
  `__call__` is temporarily wrapped to record each call; the original is
  restored in `finally`.

The result is a flat list of `Call`s in execution order. A call of a layer
`counting.is_known` recognises is a leaf (its sub-layer calls, if any, are
not listed again). An unknown layer (or subclassed model) that called
sub-layers is a container: its sub-layer calls are listed under its path,
and it gets a not-counted row of its own, which holds the weights it owns
directly and stands for whatever its `call` computes outside its sub-layers
(`keras.ops` calls there are invisible). A functional or sequential model
computes nothing outside its graph, so it gets such a row only if it owns
weights directly.
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
    its parameters); `container` marks the row of a container, which counts
    the weights it owns directly but no MACs and no activation bytes.
    """

    layer: object
    path: str
    inputs: list
    outputs: list
    variables: list
    container: bool = False


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


def _is_composite(layer):
    return (
        isinstance(layer, keras.layers.Layer)
        and not _counting.is_known(layer)
        and bool(layer._flatten_layers(include_self=False, recursive=False))
    )


def graph_calls(graph, batch_size, inputs=None, prefix=""):
    """Calls of a functional graph in execution order, nested graphs walked.

    `inputs` are symbolic tensors to feed instead of `graph.inputs` (another
    input shape); shapes are then propagated node by node with each
    operation's `compute_output_spec`, which adds no node to the model.
    Returns `(calls, output tensors)`.
    """
    tensors = {id(x): y for x, y in zip(graph.inputs, inputs or graph.inputs)}
    calls = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.is_input or isinstance(node.operation, keras.layers.InputLayer):
                continue
            path = prefix + node.operation.name
            node_inputs = [tensors[id(x)] for x in node.input_tensors]
            if graph_of(node.operation) is not None:
                node_calls, outputs = _nested_calls(node.operation, node_inputs, batch_size, path)
            else:
                node_calls, outputs = _node_calls(node, node_inputs, tensors, batch_size, path)
            calls.extend(node_calls)
            tensors.update((id(old), new) for old, new in zip(node.outputs, outputs))
    return calls, [tensors[id(x)] for x in graph.outputs]


def _nested_calls(model, inputs, batch_size, path):
    inner = graph_of(model)
    same = [tuple(x.shape) for x in inner.inputs] == [tuple(x.shape) for x in inputs]
    calls, outputs = graph_calls(inner, batch_size, None if same else inputs, prefix=path + "/")
    own = _own_weights(model)
    if own:
        specs = [_symbolic_spec(t, batch_size, path) for t in inputs]
        out_specs = [_symbolic_spec(t, batch_size, path) for t in outputs]
        calls.insert(0, Call(model, path, specs, out_specs, own, container=True))
    return calls, outputs


def _node_calls(node, inputs, tensors, batch_size, path):
    operation = node.operation
    outputs = node.outputs
    if any(new is not old for new, old in zip(inputs, node.input_tensors)):
        args, kwargs = node.arguments.fill_in(tensors)
        if isinstance(operation, keras.layers.Layer) and args:
            operation._assert_input_compatibility(args[0])
        outputs = keras.tree.flatten(operation.compute_output_spec(*args, **kwargs))
    if _is_composite(operation):
        return _trace_node(node, inputs, path, batch_size), outputs
    specs = [_symbolic_spec(t, batch_size, path) for t in inputs]
    out_specs = [_symbolic_spec(t, batch_size, path) for t in outputs]
    return [Call(operation, path, specs, out_specs, _weights(operation))], outputs


def _trace_node(node, node_inputs, path, batch_size):
    values = {}
    for old, new in zip(node.input_tensors, node_inputs):
        shape, dtype = _symbolic_spec(new, batch_size, path)
        values[id(old)] = keras.ops.zeros(shape, dtype=dtype)
    args, kwargs = node.arguments.fill_in(values)
    return _record(node.operation, path, args, kwargs)


def trace_calls(layer, input_shapes, batch_size):
    """Calls made by one eager forward pass of `layer` on zeros.

    `input_shapes` is a list of shapes without the batch dimension (one per
    model input); the zeros have the layer's input dtype.
    """
    zeros = [keras.ops.zeros((batch_size,) + tuple(shape), dtype=layer.input_dtype) for shape in input_shapes]
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
    if own or graph_of(layer) is None:
        calls.append(Call(layer, name, frame.inputs, frame.outputs, own, container=True))
    for child in frame.children:
        _emit(child, f"{path}/{child.layer.name}" if path else child.layer.name, calls)
