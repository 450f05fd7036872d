"""Triton depthwise kernels against torch.nn.functional.conv2d(groups=C).

Torch backend only. Without a CUDA device the kernels run in Triton's CPU
interpreter (slow, so a short list of cases); with one, a broader matrix.
"""

import importlib.util
import itertools
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import DATA_FORMATS, to_format
from reference import same_pads

if keras.backend.backend() != "torch":
    pytest.skip("the Triton kernels take torch tensors", allow_module_level=True)
if "tensorflow" in sys.modules:
    # Loading Triton's LLVM after TensorFlow's aborts the whole process.
    pytest.skip("TensorFlow is already loaded in this process", allow_module_level=True)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import sepconv  # noqa: E402
from sepconv import kernels as registry  # noqa: E402

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

DEVICE = "cuda" if CUDA else "cpu"
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@pytest.fixture(autouse=True)
def _fixed_launch_config(monkeypatch):
    # Correctness only: autotuning would benchmark every configuration per shape.
    monkeypatch.setenv("SEPCONV_TRITON_AUTOTUNE", "0")


def _kernels():
    from sepconv.kernels import triton as kernels

    return kernels


def reference_depthwise(x, kernel, bias, strides, padding, dilation):
    """NHWC depthwise convolution through conv2d(groups=C), in float64."""
    kh, kw, c, m = kernel.shape
    x = x.double().permute(0, 3, 1, 2)
    weight = kernel.double().permute(2, 3, 0, 1).reshape(c * m, 1, kh, kw)  # out channel c*M+m
    if padding == "same":
        top, bottom = same_pads(x.shape[2], kh, strides[0], dilation[0])
        left, right = same_pads(x.shape[3], kw, strides[1], dilation[1])
        x = F.pad(x, (left, right, top, bottom))
    bias = None if bias is None else bias.double()
    y = F.conv2d(x, weight, bias, stride=strides, dilation=dilation, groups=c)
    return y.permute(0, 2, 3, 1)


ACTIVATIONS = {"linear": lambda y: y, "relu": torch.relu, "relu6": lambda y: y.clamp(0, 6)}


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _inputs(n, h, w, c, m, kernel_size, dtype=torch.float32, bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    kh, kw = _pair(kernel_size)
    x = torch.randn(n, h, w, c, generator=g).to(DEVICE, dtype)
    kernel = (torch.randn(kh, kw, c, m, generator=g) / (kh * kw) ** 0.5).to(DEVICE, dtype)
    b = torch.randn(c * m, generator=g).to(DEVICE, dtype) if bias else None
    return [t.requires_grad_() if t is not None else None for t in (x, kernel, b)]


def _grads(y, inputs, seed=1):
    """Gradients of <y, upstream> for a fixed random upstream."""
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(inputs[0].dtype)
    upstream = upstream.to(y.device, y.dtype)  # same rounded values for both sides
    return torch.autograd.grad(y, [t for t in inputs if t is not None], upstream)


def _close(actual, expected, dtype):
    expected = expected.double()
    if dtype == torch.float32:
        torch.testing.assert_close(actual.double(), expected, rtol=1e-4, atol=1e-4)
    else:
        # bf16/fp16 storage rounds inputs and outputs (8 / 11 significant bits);
        # the reference sees the same rounded inputs and sums in float64.
        scale = expected.abs().max().item()
        torch.testing.assert_close(actual.double(), expected, rtol=2e-2, atol=2e-2 * max(scale, 1.0))


# (N, H, W, C, M, kernel, strides, dilation, padding, bias, activation)
INTERPRETER_CASES = [
    (2, 7, 9, 3, 1, 3, 1, 1, "same", False, "linear"),
    (2, 8, 8, 8, 2, 3, 2, 1, "same", True, "relu"),
    (2, 9, 7, 3, 1, (3, 1), (2, 1), 1, "valid", False, "linear"),
    (2, 9, 9, 8, 1, 3, 1, 2, "same", True, "linear"),
    (2, 9, 8, 3, 2, 3, 2, 2, "valid", False, "relu6"),
    (2, 6, 7, 8, 1, 2, 2, 1, "same", True, "linear"),
    (2, 5, 5, 3, 2, 5, 1, 1, "valid", True, "relu"),
    (2, 6, 5, 8, 1, 5, (1, 2), 1, "same", False, "linear"),
    (2, 5, 6, 3, 1, 1, 2, 1, "valid", True, "linear"),
    (2, 16, 16, 8, 1, 3, 1, 1, "same", True, "relu"),  # 512 output pixels: 2 weight-grad splits
]


def _broad_cases():
    """Every (kernel, strides, dilation, padding) once, shapes and flags rotating."""
    cases = []
    grid = itertools.product([1, 3, 5, (3, 1)], [1, 2, (2, 1)], [1, 2], ["same", "valid"])
    for i, (k, s, d, padding) in enumerate(grid):
        h, w = (9, 7) if i % 2 else (6, 11)
        c, m = [(3, 1), (40, 2), (8, 1), (72, 1)][(i // 2) % 4]
        kh, kw = _pair(k)
        if padding == "valid" and ((kh - 1) * d >= h or (kw - 1) * d >= w):
            continue
        cases.append((2, h, w, c, m, k, s, d, padding, i % 3 != 0, ["linear", "relu", "relu6"][i % 3]))
    return cases


CASES = INTERPRETER_CASES if INTERPRETED else INTERPRETER_CASES + _broad_cases()


def _case_id(case):
    n, h, w, c, m, k, s, d, padding, bias, activation = case
    return f"{h}x{w}-c{c}-m{m}-k{k}-s{s}-d{d}-{padding}-{'b' if bias else 'nob'}-{activation}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_depthwise_forward_and_gradients(case):
    n, h, w, c, m, k, s, d, padding, bias, activation = case
    strides, dilation = _pair(s), _pair(d)
    inputs = _inputs(n, h, w, c, m, k, bias=bias)
    y = _kernels().depthwise_conv2d(*inputs, strides, padding, dilation, activation)
    expected = ACTIVATIONS[activation](reference_depthwise(*inputs, strides, padding, dilation))
    assert y.shape == expected.shape
    _close(y, expected, torch.float32)
    grads = _grads(y, inputs)
    expected_grads = _grads(expected, inputs)
    for name, actual, want in zip(("input", "kernel", "bias"), grads, expected_grads):
        assert actual.shape == want.shape, name
        _close(actual, want, torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision(dtype):
    inputs = _inputs(2, 7, 8, 8, 2, 3, dtype=dtype, bias=True)
    y = _kernels().depthwise_conv2d(*inputs, (2, 1), "same", 1, "relu")
    assert y.dtype == dtype
    expected = torch.relu(reference_depthwise(*inputs, (2, 1), "same", (1, 1)))
    _close(y, expected, dtype)
    grads = _grads(y, inputs)
    expected_grads = _grads(expected, inputs)
    for actual, want, leaf in zip(grads, expected_grads, inputs):
        assert actual.dtype == leaf.dtype
        _close(actual, want, dtype)


def _tuning_cases():
    from sepconv.kernels.triton import _tuning

    return [
        *(("direct", i) for i in range(len(_tuning.DIRECT_CONFIGS))),
        *(("weight_grad", i) for i in range(len(_tuning.WEIGHT_GRAD_CONFIGS))),
        *(("fused", i) for i in range(len(_tuning.FUSED_CONFIGS))),
    ]


@pytest.mark.parametrize("family, index", _tuning_cases())
def test_every_launch_config(family, index):
    """Each block-size configuration gives the same result (masks at edges)."""
    from sepconv.kernels.triton import _depthwise, _tuning

    x, kernel, bias = (t.detach() for t in _inputs(2, 9, 11, 40, 1, 3, bias=True))
    strides, dilation = (2, 1), (1, 1)
    expected = reference_depthwise(x, kernel, bias, strides, "same", dilation)
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    if family == "direct":
        config = _tuning.DIRECT_CONFIGS[index]
        y = _depthwise.forward(x, kernel, bias, strides, dilation, "same", config=config)
        _close(y, expected, torch.float32)
        x64 = x.double().requires_grad_()
        (want,) = torch.autograd.grad(reference_depthwise(x64, kernel, None, strides, "same", dilation), x64, upstream)
        dx = _depthwise.input_grad(upstream, kernel, x.shape, strides, dilation, "same", config=config)
        _close(dx, want, torch.float32)
    elif family == "weight_grad":
        config = _tuning.WEIGHT_GRAD_CONFIGS[index]
        k64, b64 = kernel.double().requires_grad_(), bias.double().requires_grad_()
        want = torch.autograd.grad(reference_depthwise(x, k64, b64, strides, "same", dilation), (k64, b64), upstream)
        got = _depthwise.weight_grad(x, upstream, kernel.shape, True, strides, dilation, "same", config=config)
        for actual, reference in zip(got, want):
            _close(actual, reference, torch.float32)
    else:
        config = _tuning.FUSED_CONFIGS[index]
        pointwise = torch.randn(40, 70, generator=torch.Generator().manual_seed(3)).to(DEVICE) / 40**0.5
        y = _depthwise.fused_forward(x, kernel, bias, pointwise, None, strides, dilation, "same", config=config)
        _close(y, expected @ pointwise.double(), torch.float32)


def reference_separable(x, kernel, depthwise_bias, pointwise, bias, strides, padding, dilation, activations):
    mid = ACTIVATIONS[activations[0]](reference_depthwise(x, kernel, depthwise_bias, strides, padding, dilation))
    bias = None if bias is None else bias.double()
    y = F.conv2d(mid.permute(0, 3, 1, 2), pointwise.double().T[:, :, None, None], bias)
    return ACTIVATIONS[activations[1]](y.permute(0, 2, 3, 1))


@pytest.mark.parametrize(
    "case",
    [
        # (C, M, F, kernel, strides, padding, biases, (depthwise activation, activation), dtype)
        (8, 1, 24, 3, 1, "same", True, ("linear", "linear"), torch.float32),
        (3, 2, 16, 3, 2, "valid", False, ("relu", "relu6"), torch.float32),
        (40, 1, 20, (3, 1), (2, 1), "same", True, ("linear", "relu"), torch.float32),
        (8, 2, 24, 3, 1, "same", True, ("relu", "relu"), torch.float16),
        (8, 2, 24, 3, 1, "same", True, ("relu", "relu"), torch.bfloat16),
    ],
    ids=lambda case: f"c{case[0]}-m{case[1]}-f{case[2]}-k{case[3]}-s{case[4]}-{case[5]}-{'-'.join(case[7])}-{case[8]}",
)
def test_fused_separable(case):
    c, m, filters, k, s, padding, biases, activations, dtype = case
    if INTERPRETED and dtype == torch.bfloat16:
        pytest.skip("Triton's interpreter multiplies bfloat16 tl.dot operands as raw integers")
    x, kernel, depthwise_bias = _inputs(2, 7, 6, c, m, k, dtype=dtype, bias=biases)
    g = torch.Generator().manual_seed(2)
    pointwise = (torch.randn(1, 1, c * m, filters, generator=g) / (c * m) ** 0.5).to(DEVICE, dtype).requires_grad_()
    bias = torch.randn(filters, generator=g).to(DEVICE, dtype).requires_grad_() if biases else None
    inputs = (x, kernel, depthwise_bias, pointwise, bias)
    strides = _pair(s)
    y = _kernels().separable_conv2d(
        x, kernel, pointwise, depthwise_bias, bias, strides, padding, 1, activations[0], activations[1]
    )
    expected = reference_separable(
        x, kernel, depthwise_bias, pointwise[0, 0], bias, strides, padding, (1, 1), activations
    )
    _close(y, expected, dtype)
    grads = _grads(y, inputs)
    expected_grads = _grads(expected, inputs)
    for actual, want in zip(grads, expected_grads):
        _close(actual, want, dtype)


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2])
def test_registry_signature(rank, data_format):
    """depthwise_conv_triton(x, kernel, strides, padding, data_format, dilation_rate)
    with a Keras Variable as kernel, 1-D and 2-D, both data formats."""
    if rank == 1:
        spatial, kernel_size, strides, dilation = (9,), (3,), (2,), (1,)
    else:
        spatial, kernel_size, strides, dilation = (7, 6), (3, 2), (1, 2), (2, 1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *spatial, 8, generator=g).to(DEVICE)
    kernel = keras.Variable(torch.randn(*kernel_size, 8, 2, generator=g).numpy())
    expected = reference_depthwise(
        x if rank == 2 else x[:, None],
        torch.as_tensor(kernel.numpy()).to(DEVICE).reshape(*(1,) * (2 - rank), *kernel_size, 8, 2),
        None, (1,) * (2 - rank) + strides, "same", (1,) * (2 - rank) + dilation,
    )
    expected = expected if rank == 2 else expected[:, 0]
    if data_format == "channels_first":
        x, expected = torch.movedim(x, -1, 1), torch.movedim(expected, -1, 1)
    y = _kernels().depthwise_conv_triton(x, kernel, strides, "same", data_format, dilation)
    _close(y, expected, torch.float32)


def test_channels_last_memory_is_not_copied(monkeypatch):
    """An NCHW tensor with channels_last strides is read in place."""
    from sepconv.kernels.triton import _depthwise

    x = torch.randn(2, 8, 5, 5).to(DEVICE).contiguous(memory_format=torch.channels_last)
    kernel = torch.randn(3, 3, 8, 1).to(DEVICE)
    seen = []
    forward = _depthwise.forward
    monkeypatch.setattr(_depthwise, "forward", lambda x, *args: seen.append(x.data_ptr()) or forward(x, *args))
    y = _kernels().depthwise_conv_triton(x, kernel, (1, 1), "same", "channels_first", (1, 1))
    assert seen == [x.data_ptr()]
    assert y.shape == (2, 8, 5, 5) and y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda k, x, w: k.depthwise_conv2d(x, w, padding="causal"), ValueError,
         "padding must be one of \"valid\", \"same\". Received: padding='causal'"),
        (lambda k, x, w: k.depthwise_conv2d(x, w, activation="gelu"), ValueError,
         "activation must be one of ('linear', 'relu', 'relu6'). Received: activation='gelu'"),
        (lambda k, x, w: k.depthwise_conv2d(x, w, strides=(1, 0)), ValueError,
         "strides must be a positive int or a pair of them. Received: strides=(1, 0)"),
        (lambda k, x, w: k.depthwise_conv2d(x.double(), w), TypeError,
         "The Triton depthwise kernels take float32, bfloat16 or float16. Received: dtype=torch.float64"),
        (lambda k, x, w: k.depthwise_conv2d(x, w[:, :, :2]), ValueError,
         "Received: input_shape=(1, 5, 5, 3), kernel_shape=(3, 3, 2, 1)"),
        (lambda k, x, w: k.depthwise_conv_triton(x[:, None], w[None], (1, 1, 1), "same", "channels_last", (1, 1, 1)),
         ValueError, "supports 1-D and 2-D inputs. Received: input_shape=(1, 1, 5, 5, 3)"),
        (lambda k, x, w: k.separable_conv2d(x, w, torch.ones(4, 2)), ValueError,
         "pointwise must have C * M rows. Received: kernel_shape=(3, 3, 3, 1), pointwise_shape=(4, 2)"),
        (lambda k, x, w: k.depthwise_conv_triton(x.numpy(), w, (1, 1), "same", "channels_last", (1, 1)), TypeError,
         "takes torch tensors (Keras' torch backend). Received: type(x)=ndarray"),
    ],
    ids=["padding", "activation", "strides", "dtype", "channels", "rank", "pointwise", "not_torch"],
)
def test_errors(call, error, message):
    x, kernel = torch.ones(1, 5, 5, 3), torch.ones(3, 3, 3, 1)
    with pytest.raises(error) as raised:
        call(_kernels(), x, kernel)
    assert message in str(raised.value)


@pytest.mark.skipif(CUDA, reason="checks the error for CPU tensors outside the interpreter")
def test_cpu_tensor_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=r"need CUDA tensors \(or TRITON_INTERPRET=1\)\. Received: device=cpu"):
        _kernels().depthwise_conv2d(torch.ones(1, 5, 5, 3), torch.ones(3, 3, 3, 1))


def _gpucheck():
    """`tools/gpucheck.py`, a script outside the package, loaded as a module."""
    path = Path(__file__).resolve().parents[1] / "tools" / "gpucheck.py"
    spec = importlib.util.spec_from_file_location("gpucheck", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpucheck_tiny(tmp_path, capsys):
    """The GPU check script end to end on tiny shapes: every entry recorded."""
    status = _gpucheck().main(["--out", str(tmp_path), "--tiny", "--dtypes", "float32", "--repeats", "1"])
    report = json.loads((tmp_path / "gpucheck.json").read_text())
    summary = report["correctness_summary"]
    assert status == 0 and summary["cases"] == summary["ok"] > 0, summary
    half = [c for c in report["correctness"] if c["dtype"] != "float32"]  # judged against torch in that dtype too
    assert half and all("torch_forward" in c["errors"] and "torch_input_grad" in c["errors"] for c in half)
    assert not report["skipped"]
    assert [b for b in report["benchmarks"] if "median_ms" not in b] == []
    assert len(report["benchmarks"]) == 14
    assert "triton_depthwise/torch_depthwise_channels_last forward+backward float32" in report["ratios"]
    environment = report["environment"]  # sepconv._provenance's record
    assert environment["backend"] == "torch"
    assert environment["device"] == (f"GPU: {torch.cuda.get_device_name(0)}" if CUDA else "CPU")
    assert {"torch", "triton"} <= set(environment["versions"]) and {"git", "command", "time"} <= set(environment)
    assert sorted(os.listdir(tmp_path)) == ["gpucheck.json"]  # written atomically: no temporary file left
    assert "gpucheck: correctness" in capsys.readouterr().out


def test_gpucheck_rejects_unknown_dtype(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _gpucheck().main(["--out", str(tmp_path), "--tiny", "--dtypes", "float32,int8"])
    assert "--dtypes must name float32, bfloat16, float16. Received: ['int8']" in capsys.readouterr().err


def test_gpucheck_needs_the_torch_backend(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert _gpucheck().main(["--out", str(tmp_path), "--tiny"]) == 2
    assert capsys.readouterr().err == (
        "gpucheck: runs on Keras' torch backend (Triton cannot load after TensorFlow). Received: KERAS_BACKEND=jax\n"
    )


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2])
def test_layer_runs_triton_when_forced(rank, data_format, rng):
    """The registry name "triton" through a layer: the same result as "native"."""
    assert "triton" in registry.available_implementations()
    layer = getattr(sepconv, f"DepthwiseSeparableConv{rank}D")(
        5, 3, strides=2, padding="same", depth_multiplier=2, data_format=data_format
    )
    x = to_format(rng.normal(size=(2, *(7,) * rank, 4)).astype("float32"), data_format)
    with registry.use_depthwise_implementation("native"):
        expected = keras.ops.convert_to_numpy(layer(x))
    with registry.record_depthwise_calls() as calls, registry.use_depthwise_implementation("triton"):
        got = keras.ops.convert_to_numpy(layer(x))
    assert [call["implementation"] for call in calls] == ["triton"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_auto_never_picks_triton_by_rule(tmp_path, monkeypatch):
    """Only a measurement stored by `sepconv bench tune` lets "auto" choose "triton"."""
    monkeypatch.setenv("SEPCONV_CACHE_DIR", str(tmp_path))  # no measurements
    x, kernel = torch.zeros(2, 8, 8, 3).to(DEVICE), torch.zeros(3, 3, 3, 1).to(DEVICE)
    assert registry.resolve(x, kernel, (1, 1), "same", "channels_last", (1, 1)) != "triton"


def test_is_available():
    # Triton is loaded by now, so a later TensorFlow import does not matter.
    assert _kernels().is_available()
