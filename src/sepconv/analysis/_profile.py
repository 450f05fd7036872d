"""Per-layer parameters, MACs and bytes moved of a Keras 3 model.

Conventions (also carried by every `ModelProfile` as `convention`):

* MACs count the multiply-accumulates of convolution and dense kernels only;
  bias adds, normalization, activations, pooling and elementwise merges count
  0 (see `sepconv.analysis._counting`). FLOPs = 2 x MACs. A layer that is not
  recognised has `macs=None` and is named in `ModelProfile.not_counted`.
* A layer made of sub-layers (a custom block, a subclassed model, Keras'
  `MultiHeadAttention`) has a row per sub-layer call plus its own
  not-counted row, since `keras.ops` calls in its `call` are not visible.
* Every call counts: a layer called twice has two rows, each with its MACs.
  Parameters are counted once, on the first row that uses a weight, so the
  rows add up to `model.count_params()` (less any weights no call used,
  which `ModelProfile.unused_weights` names).
* Bytes: each call reads its inputs and weights once and writes its outputs
  once (no caching, no fusion), the usual roofline simplification (Williams,
  Waterman & Patterson 2009, "Roofline: an insightful visual performance
  model", CACM 52(4)). Arithmetic intensity = FLOPs / bytes moved.
* Numbers are for one forward pass over `batch_size` samples.
"""

import dataclasses
import math
import re

import keras

from sepconv import _validation
from sepconv.analysis import _calls, _counting

__all__ = ["LayerProfile", "ModelProfile", "profile_model"]


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """One call of one layer (see the module docstring for conventions).

    `macs` is `None` when the layer is not recognised. `call_index` is 1 for
    a layer's first call, 2 for its second and so on. `container` marks the
    row of a layer whose sub-layer calls have rows of their own: it holds the
    weights the layer owns directly and stands, not counted, for what its
    `call` computes outside those sub-layers.
    """

    name: str
    class_name: str
    call_index: int
    input_shapes: tuple
    output_shapes: tuple
    trainable_params: int
    non_trainable_params: int
    macs: int | None
    activation_bytes_read: int
    activation_bytes_written: int
    weight_bytes: int
    container: bool = False

    @property
    def params(self):
        return self.trainable_params + self.non_trainable_params

    @property
    def flops(self):
        return None if self.macs is None else 2 * self.macs

    @property
    def bytes_moved(self):
        return self.activation_bytes_read + self.activation_bytes_written + self.weight_bytes

    @property
    def arithmetic_intensity(self):
        """FLOPs per byte moved, `None` if not counted or nothing moves."""
        if self.macs is None or not self.bytes_moved:
            return None
        return self.flops / self.bytes_moved

    def to_dict(self):
        row = dataclasses.asdict(self)
        row["input_shapes"] = [list(shape) for shape in self.input_shapes]
        row["output_shapes"] = [list(shape) for shape in self.output_shapes]
        row.update(
            params=self.params,
            flops=self.flops,
            bytes_moved=self.bytes_moved,
            arithmetic_intensity=self.arithmetic_intensity,
        )
        return row


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """Per-call rows of a model plus totals.

    `trainable_params`/`non_trainable_params` come from the model's weights
    (so `params == model.count_params()`); `unused_weights` names weights
    that no recorded call used (their parameters are in the totals, in no
    row). `macs` adds up the counted rows; `not_counted` names the rest
    (layers without a MAC rule, and containers; see `LayerProfile`).
    `method` is "graph" (symbolic shapes of the model graph) or "trace"
    (an eager forward pass on zeros).
    """

    model_name: str
    method: str
    batch_size: int
    input_shapes: tuple
    layers: tuple
    trainable_params: int
    non_trainable_params: int
    unused_weights: tuple
    convention: str = _counting.MAC_CONVENTION

    @property
    def params(self):
        return self.trainable_params + self.non_trainable_params

    @property
    def macs(self):
        return sum(row.macs for row in self.layers if row.macs is not None)

    @property
    def flops(self):
        return 2 * self.macs

    @property
    def not_counted(self):
        return tuple(row.name for row in self.layers if row.macs is None)

    @property
    def weight_bytes(self):
        return sum(row.weight_bytes for row in self.layers)

    @property
    def activation_bytes(self):
        return sum(row.activation_bytes_read + row.activation_bytes_written for row in self.layers)

    @property
    def bytes_moved(self):
        return sum(row.bytes_moved for row in self.layers)

    @property
    def arithmetic_intensity(self):
        """FLOPs of the counted rows per byte moved by all rows."""
        return self.flops / self.bytes_moved if self.bytes_moved else None

    def to_dict(self):
        """A JSON-ready dictionary: conventions, totals and every row."""
        return {
            "model_name": self.model_name,
            "method": self.method,
            "batch_size": self.batch_size,
            "input_shapes": [list(shape) for shape in self.input_shapes],
            "convention": self.convention,
            "totals": {
                "params": self.params,
                "trainable_params": self.trainable_params,
                "non_trainable_params": self.non_trainable_params,
                "macs": self.macs,
                "flops": self.flops,
                "weight_bytes": self.weight_bytes,
                "activation_bytes": self.activation_bytes,
                "bytes_moved": self.bytes_moved,
                "arithmetic_intensity": self.arithmetic_intensity,
            },
            "not_counted": list(self.not_counted),
            "unused_weights": list(self.unused_weights),
            "layers": [row.to_dict() for row in self.layers],
        }


def _dtype_size(dtype):
    """Bytes per element of a Keras dtype name ("float32" -> 4, "bool" -> 1)."""
    dtype = keras.backend.standardize_dtype(dtype)
    bits = re.search(r"\d+", dtype)
    return max(int(bits.group()) // 8, 1) if bits else 1


def _tensor_bytes(specs, dtype_bytes):
    return sum(math.prod(shape) * (dtype_bytes or _dtype_size(dtype)) for shape, dtype in specs)


def _variable_bytes(variables, dtype_bytes):
    return sum(math.prod(v.shape) * (dtype_bytes or _dtype_size(v.dtype)) for v in variables)


def _standardize_input_shapes(input_shape):
    """`None`, one shape or a list of shapes -> `None` or a list of tuples."""
    if input_shape is None:
        return None
    is_shape = isinstance(input_shape, (list, tuple)) and all(isinstance(d, int) for d in input_shape)
    shapes = [input_shape] if is_shape else input_shape
    if not isinstance(shapes, (list, tuple)) or not shapes or not all(
        isinstance(shape, (list, tuple))
        and shape
        and all(isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 for dim in shape)
        for shape in shapes
    ):
        raise ValueError(
            "input_shape must be a tuple of positive integers (without the batch dimension), "
            f"or a list of such tuples. Received: input_shape={input_shape!r}"
        )
    return [tuple(shape) for shape in shapes]


def _symbolic_inputs(model, graph, shapes, input_shape):
    """Symbolic tensors of `shapes` to feed the graph in place of its inputs."""
    if len(shapes) != len(graph.inputs):
        raise ValueError(
            f"Model '{model.name}' has {len(graph.inputs)} inputs; input_shape must give one "
            f"shape per input. Received: input_shape={input_shape!r}"
        )
    for shape, x in zip(shapes, graph.inputs):
        if len(shape) != len(x.shape) - 1:
            raise ValueError(
                f"input_shape must have the rank of the model's input {tuple(x.shape)} without the "
                f"batch dimension ({len(x.shape) - 1} dimensions). Received: input_shape={input_shape!r}"
            )
    return [keras.KerasTensor((None,) + shape, dtype=x.dtype) for shape, x in zip(shapes, graph.inputs)]


def _collect_calls(model, input_shape, batch_size):
    """`(method, input shapes, calls)`: the graph walk if there is a graph, else a trace."""
    shapes = _standardize_input_shapes(input_shape)
    graph = _calls.graph_of(model)
    if graph is None:
        if shapes is None:
            raise ValueError(
                f"Model '{model.name}' has no input shape to profile: pass input_shape "
                "(without the batch dimension), e.g. input_shape=(32, 32, 3). Received: input_shape=None"
            )
        return "trace", shapes, _calls.trace_calls(model, shapes, batch_size)
    inputs = None if shapes is None else _symbolic_inputs(model, graph, shapes, input_shape)
    try:
        calls, _ = _calls.graph_calls(graph, batch_size, inputs)
    except _calls.UnknownShapeError as error:
        raise ValueError(
            f"Model '{model.name}' has dimensions other than the batch that are unknown "
            f"({error}); pass input_shape. Received: input_shape={input_shape!r}"
        ) from None
    return "graph", shapes or [tuple(x.shape[1:]) for x in graph.inputs], calls


def _count(variables):
    return sum(math.prod(v.shape) for v in variables)


def _rows(calls, trainable_ids, dtype_bytes):
    """One `LayerProfile` per call; each weight counts on the first call using it."""
    claimed, call_counts, rows = set(), {}, []
    for call in calls:
        new = [v for v in call.variables if id(v) not in claimed]
        claimed.update(id(v) for v in new)
        call_counts[id(call.layer)] = call_counts.get(id(call.layer), 0) + 1
        trainable = _count(v for v in new if id(v) in trainable_ids)
        input_shapes = [shape for shape, _ in call.inputs]
        output_shapes = [shape for shape, _ in call.outputs]
        if call.container:  # its own weights; what it computes outside sub-layers is unseen
            macs, read, written = None, 0, 0
        else:
            macs = _counting.call_macs(call.layer, input_shapes, output_shapes)
            read, written = _tensor_bytes(call.inputs, dtype_bytes), _tensor_bytes(call.outputs, dtype_bytes)
        rows.append(
            LayerProfile(
                name=call.path,
                class_name=type(call.layer).__name__,
                call_index=call_counts[id(call.layer)],
                input_shapes=tuple(input_shapes),
                output_shapes=tuple(output_shapes),
                trainable_params=trainable,
                non_trainable_params=_count(new) - trainable,
                macs=macs,
                activation_bytes_read=read,
                activation_bytes_written=written,
                weight_bytes=_variable_bytes(call.variables, dtype_bytes),
                container=call.container,
            )
        )
    return rows, claimed


def profile_model(model, input_shape=None, batch_size=1, dtype_bytes=None):
    """Profiles every layer call of `model`: parameters, MACs, FLOPs, bytes.

    Args:
        model: a Keras 3 model (functional, sequential or subclassed) or layer.
        input_shape: shape of one sample without the batch dimension, e.g.
            `(32, 32, 3)`, or a list of them for a multi-input model. Needed
            when the model's own shapes are unknown (subclassed, or built with
            `None` dimensions). Functional and sequential models are profiled
            from their graph (shapes propagated symbolically, nothing runs);
            subclassed models by an eager forward pass on zeros of this shape.
        batch_size: samples per forward pass; fills the batch dimension.
        dtype_bytes: bytes per element for activations and weights; by
            default each tensor's and weight's own dtype size.

    Returns:
        A `ModelProfile`. The conventions are in this module's docstring and
        in `ModelProfile.convention`.
    """
    _validation.positive_int(batch_size, "batch_size")
    if dtype_bytes is not None:
        _validation.positive_int(dtype_bytes, "dtype_bytes")
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"model must be a Keras model or layer. Received: model={type(model).__name__}")
    method, input_shapes, calls = _collect_calls(model, input_shape, batch_size)
    trainable_ids = {id(v) for v in model.trainable_weights}
    rows, claimed = _rows(calls, trainable_ids, dtype_bytes)
    weights = model.weights
    trainable = _count(v for v in weights if id(v) in trainable_ids)
    return ModelProfile(
        model_name=model.name,
        method=method,
        batch_size=batch_size,
        input_shapes=tuple(input_shapes),
        layers=tuple(rows),
        trainable_params=trainable,
        non_trainable_params=_count(weights) - trainable,
        unused_weights=tuple(v.path for v in weights if id(v) not in claimed),
    )
