"""Running exported files where they are deployed: ONNX Runtime and LiteRT.

`open_runtime(path)` gives a callable `runtime(x) -> numpy outputs` over a batch of any
size, on the CPU with `threads` intra-op threads (None: the runtime's default), and
`runtime.ops()` counts the operators of the file as the runtime loads it.
"""

import collections

import numpy as np

from sepconv.export import _formats


class OnnxRuntime:
    """An ONNX Runtime CPU session (all graph optimizations on)."""

    name = "onnxruntime"

    def __init__(self, path, threads=None, profile=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = profile
        self.path, self.threads = path, threads
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def load(self):
        """Nothing more to do: the session loaded the graph."""

    def __call__(self, x):
        return self.session.run(None, {self.input: np.asarray(x, np.float32)})[0]

    def ops(self):
        import onnx

        return collections.Counter(node.op_type for node in onnx.load(self.path).graph.node)

    def end_profiling(self):
        return self.session.end_profiling()


class LiteRT:
    """A LiteRT interpreter (`ai_edge_litert`, XNNPACK delegate by default) resized to each batch."""

    name = "litert"

    def __init__(self, path, threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.threads = path, threads
        self.interpreter = Interpreter(model_path=path, num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.shape = None

    def load(self):
        """Prepares the graph for its stored input shape (fails on operators LiteRT lacks)."""
        self.interpreter.allocate_tensors()

    def __call__(self, x):
        x = np.asarray(x, np.float32)
        if self.shape != x.shape:
            self.interpreter.resize_tensor_input(self.input, x.shape)
            self.interpreter.allocate_tensors()
            self.shape = x.shape
        self.interpreter.set_tensor(self.input, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)

    def ops(self):
        """Operators of the file itself (no delegate, which would hide them behind DELEGATE nodes)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        plain = Interpreter(
            model_path=self.path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        return collections.Counter(op["op_name"] for op in plain._get_ops_details())


def open_runtime(path, threads=None):
    """The runtime for `path` (by extension): `OnnxRuntime` or `LiteRT`."""
    fmt = _formats.format_of(path)
    _formats.require(_formats.RUNTIME_PACKAGES[fmt], f"running {fmt} files")
    return OnnxRuntime(path, threads) if fmt == "onnx" else LiteRT(path, threads)


def run_batches(runtime, x, batch_size=64):
    """`runtime` over `x` in batches, outputs concatenated."""
    return np.concatenate([runtime(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
