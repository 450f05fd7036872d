"""GPU check of the Triton depthwise kernels: correctness matrix and timings.

    python tools/gpucheck.py --out DIR           # on a CUDA machine (Keras' torch backend)
    python tools/gpucheck.py --out DIR --tiny    # no GPU: tiny shapes in Triton's interpreter

Needs torch, triton and keras (the sepconv package is read from this checkout's
`src/`); runs with `KERAS_BACKEND=torch`, the default here.

Correctness: forward, input, kernel and bias gradients of the depthwise
kernels, and of the fused depthwise -> pointwise kernel, against the numpy
loops of `tests/reference.py` (float64), over kernel sizes, strides,
dilations, paddings, multipliers and dtypes; then every launch configuration
once. These run with one fixed launch configuration (no autotuning).

Timings (autotuned): depthwise 3x3 forward and forward+backward on an
(N, C, H, W) = (512, 256, 16, 16) tensor in bfloat16 and float32, against
torch's conv2d(groups=C) in NCHW and channels_last memory, a device copy of
the same tensor, a dense 3x3 convolution (C -> C) and torch's separable pair
(grouped conv + 1x1 conv) next to the fused kernel. Each is warmed up, then
timed with CUDA events; the median of --repeats runs is reported, and ratios
are taken within this run.

Order: one correctness check of each kind, the timings, every launch
configuration, then the rest of the matrix, so a run cut short (or over
--budget-s) still has its timings.
Every entry is caught on its own (an error is recorded, the run goes on) and
DIR/gpucheck.json is rewritten atomically after each one, with the provenance
record of `sepconv._provenance`, so a cut-off run keeps what it finished.
"""

import argparse
import dataclasses
import importlib.util
import itertools
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _folder in (ROOT / "tests", ROOT / "src"):  # the numpy references; the sepconv of this checkout
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import numpy as np  # noqa: E402

import reference  # noqa: E402


@dataclasses.dataclass
class Config:
    out: str = "gpucheck"
    tiny: bool = False  # tiny shapes on CPU under TRITON_INTERPRET=1: checks this script, times nothing real
    batch: int = 512
    channels: int = 256
    size: int = 16
    kernel: int = 3
    dtypes: tuple = ("bfloat16", "float32")
    warmup: int = 5
    repeats: int = 20
    budget_s: float = 420.0  # checks and timings still pending after this are skipped (and listed)
    correctness: bool = True
    benchmarks: bool = True
    commit: str = None  # recorded as given (a copied tree has no .git); default: the checkout's


# On the relative error ||out - ref|| / ||ref|| (float64 reference). Half types round inputs,
# intermediates and outputs (8 / 11 bits): an error also passes within twice that of torch's
# own ops in the same dtype on the same inputs (`torch_*` in the report).
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-2, "float16": 1e-2}


class Report:
    def __init__(self, config):
        import torch

        from sepconv import _provenance

        self.path = Path(config.out) / "gpucheck.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        environment = _provenance.environment(backend="torch")
        if config.commit:
            environment["git"] = {"commit": config.commit, "dirty": None}
        runtime = {"cuda": torch.version.cuda, "triton_interpret": os.environ.get("TRITON_INTERPRET", "0")}
        self.data = {"config": dataclasses.asdict(config), "environment": environment, "runtime": runtime,
                     "correctness": [], "benchmarks": [], "skipped": [], "ratios": {}}
        self.write()

    def add(self, section, entry):
        self.data[section].append(entry)
        status = entry.get("error") or ("ok" if entry.get("ok", True) else "MISMATCH")
        shown = {k: v for k, v in entry.items() if k not in ("traceback",)}
        print(f"[{section}] {status:8.8} {json.dumps(shown)}", flush=True)
        self.write()

    def skip(self, entry):
        print(f"[skipped, over budget] {json.dumps(entry)}", flush=True)
        self.data["skipped"].append(entry)
        self.write()

    def write(self):
        from sepconv import _atomic

        self.data["ratios"] = _ratios(self.data["benchmarks"])
        checks = self.data["correctness"]
        self.data["correctness_summary"] = {
            "cases": len(checks),
            "ok": sum(1 for c in checks if c.get("ok")),
            "mismatched": sum(1 for c in checks if c.get("ok") is False),
            "errors": sum(1 for c in checks if "error" in c),
        }
        _atomic.write_text(self.path, json.dumps(self.data, indent=1, default=str))


# --- correctness, against tests/reference.py ------------------------------

ACTIVATIONS = {"linear": lambda y: y, "relu": reference.relu, "relu6": lambda y: np.clip(y, 0, 6)}
DERIVATIVES = {"linear": np.ones_like, "relu": lambda y: y > 0, "relu6": lambda y: (y > 0) & (y < 6)}


def _numpy(tensor):
    """float64 copy of a torch tensor (half types keep their rounded values)."""
    return tensor.detach().double().cpu().numpy()


def _reference_depthwise(x, kernel, bias, strides, padding, dilation, activation, upstream):
    """Output and (input, kernel, bias) gradients of act(depthwise(x) + bias) for `upstream`."""
    pre = reference.depthwise(x, kernel, strides, padding, dilation) + (0 if bias is None else bias)
    g = upstream * DERIVATIVES[activation](pre)
    dx, dkernel = reference.depthwise_gradients(x, kernel, g, strides, padding, dilation)
    return ACTIVATIONS[activation](pre), (dx, dkernel, g.sum(axis=(0, 1, 2)))


def _error(actual, expected):
    """||actual - expected|| / ||expected||. Not the largest error: in half types a
    pre-activation that rounds across zero flips one ReLU mask entry, which moves a
    gradient element by a whole upstream value while the rest agree."""
    return float(np.linalg.norm(_numpy(actual) - expected) / max(np.linalg.norm(expected), 1e-30))


def _random(generator, shape, device, dtype, scale=1.0):
    import torch

    return (torch.randn(*shape, generator=generator) * scale).to(device, dtype).requires_grad_()


def _torch_depthwise(x, kernel, bias, strides, padding, dilation, activation):
    """act(depthwise(x) + bias) through torch's own conv2d(groups=C), NHWC in and out."""
    import torch.nn.functional as F

    kh, kw, c, m = kernel.shape
    xc = x.permute(0, 3, 1, 2)
    if padding == "same":
        top, bottom = reference.same_pads(x.shape[1], kh, strides[0], dilation[0])
        left, right = reference.same_pads(x.shape[2], kw, strides[1], dilation[1])
        xc = F.pad(xc, (left, right, top, bottom))
    weight = kernel.permute(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
    y = F.conv2d(xc, weight, bias, stride=strides, dilation=dilation, groups=c).permute(0, 2, 3, 1)
    return {"linear": y, "relu": F.relu(y), "relu6": F.relu6(y)}[activation]


def _errors(function, leaves, upstream, expected, want, names):
    """Errors of function(*leaves) and of its gradients for `upstream`, against float64."""
    import torch

    y = function(*leaves)
    errors = {"forward": _error(y, expected)}
    for name, got, reference_value in zip(names, torch.autograd.grad(y, leaves, upstream), want):
        errors[name] = _error(got, reference_value)
    return errors


def _with_torch_errors(errors, theirs, leaves, upstream, expected, want, names):
    """In half types, also the errors of torch's own ops in that dtype on the same inputs
    (`torch_<name>`): what the dtype allows, the yardstick `_record` judges by."""
    import torch

    if leaves[0].dtype != torch.float32:
        fresh = [t.detach().clone().requires_grad_() for t in leaves]
        torch_errors = _errors(theirs, fresh, upstream, expected, want, names)
        errors.update({f"torch_{name}": value for name, value in torch_errors.items()})
    return errors


def _check_depthwise(case, dtype_name, device):
    import torch

    from sepconv.kernels.triton import depthwise_conv2d

    (n, h, w, c, m), k, strides, dilation, padding, with_bias, activation = case
    dtype = getattr(torch, dtype_name)
    kh, kw = (k, k) if isinstance(k, int) else k
    g = torch.Generator().manual_seed(0)
    x = _random(g, (n, h, w, c), device, dtype)
    kernel = _random(g, (kh, kw, c, m), device, dtype, (kh * kw) ** -0.5)
    bias = _random(g, (c * m,), device, dtype) if with_bias else None
    leaves = [t for t in (x, kernel, bias) if t is not None]
    geometry = (strides, padding, dilation, activation)
    ours = lambda x, kernel, bias=None: depthwise_conv2d(x, kernel, bias, *geometry)  # noqa: E731
    theirs = lambda x, kernel, bias=None: _torch_depthwise(x, kernel, bias, *geometry)  # noqa: E731
    upstream = torch.randn(ours(*leaves).shape, generator=g).to(device, dtype)
    expected, want = _reference_depthwise(
        _numpy(x), _numpy(kernel), None if bias is None else _numpy(bias), strides, padding, dilation, activation,
        _numpy(upstream),
    )
    names = ("input_grad", "kernel_grad", "bias_grad")
    errors = _errors(ours, leaves, upstream, expected, want, names)
    return _with_torch_errors(errors, theirs, leaves, upstream, expected, want, names)


def _check_separable(case, dtype_name, device):
    """relu(relu(depthwise(x) + dw_bias) @ pointwise + bias), gradients by hand through the 1x1 step."""
    import torch

    from sepconv.kernels.triton import separable_conv2d

    (n, h, w, c, m), filters, strides, padding = case
    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(0)
    x = _random(g, (n, h, w, c), device, dtype)
    kernel = _random(g, (3, 3, c, m), device, dtype, 1 / 3)
    dw_bias = _random(g, (c * m,), device, dtype)
    pointwise = _random(g, (c * m, filters), device, dtype, (c * m) ** -0.5)
    bias = _random(g, (filters,), device, dtype)
    leaves = [x, kernel, dw_bias, pointwise, bias]
    ours = lambda x, k, db, p, b: separable_conv2d(x, k, p, db, b, strides, padding, 1, "relu", "relu")  # noqa: E731

    def theirs(x, k, db, p, b):
        mid = _torch_depthwise(x, k, db, strides, padding, (1, 1), "relu")
        return torch.relu(mid @ p + b)

    upstream = torch.randn(ours(*leaves).shape, generator=g).to(device, dtype)
    xn, kn, dwbn, pwn, bn, up = (_numpy(t) for t in (*leaves, upstream))
    mid = reference.relu(reference.depthwise(xn, kn, strides, padding, (1, 1)) + dwbn)
    pre = reference.pointwise(mid, pwn[None, None]) + bn
    g_pre = up * (pre > 0)
    g_mid = (g_pre @ pwn.T) * (mid > 0)
    dx, dkernel = reference.depthwise_gradients(xn, kn, g_mid, strides, padding, (1, 1))
    d_pointwise = mid.reshape(-1, c * m).T @ g_pre.reshape(-1, filters)
    want = (dx, dkernel, g_mid.sum(axis=(0, 1, 2)), d_pointwise, g_pre.sum(axis=(0, 1, 2)))
    names = ("input_grad", "kernel_grad", "depthwise_bias_grad", "pointwise_grad", "bias_grad")
    errors = _errors(ours, leaves, upstream, reference.relu(pre), want, names)
    return _with_torch_errors(errors, theirs, leaves, upstream, reference.relu(pre), want, names)


def _launch_config_checks(device):
    """(family, index, config, check) for every configuration of every kernel on
    one ragged shape; each check returns its errors, so one that fails to launch
    (too much shared memory, say) is recorded without hiding the others."""
    import torch

    from sepconv.kernels.triton import _depthwise, _tuning

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 11, 40, generator=g).to(device)
    kernel = torch.randn(3, 3, 40, 1, generator=g).to(device) / 3
    bias = torch.randn(40, generator=g).to(device)
    pointwise = torch.randn(40, 70, generator=g).to(device) / 40**0.5
    geometry = ((2, 1), (1, 1), "same")
    upstream = torch.randn(2, 5, 11, 40, generator=g).to(device)  # 'same', strides (2, 1): (2, ceil(9 / 2), 11, 40)
    expected, (want_dx, want_dk, want_db) = _reference_depthwise(
        _numpy(x), _numpy(kernel), _numpy(bias), (2, 1), "same", (1, 1), "linear", _numpy(upstream)
    )

    def direct(config):
        y = _depthwise.forward(x, kernel, bias, *geometry, config=config)
        dx = _depthwise.input_grad(upstream, kernel, x.shape, *geometry, config=config)
        return {"forward": _error(y, expected), "input_grad": _error(dx, want_dx)}

    def weight_grad(config):
        dk, db = _depthwise.weight_grad(x, upstream, kernel.shape, True, *geometry, config=config)
        return {"kernel_grad": _error(dk, want_dk), "bias_grad": _error(db, want_db)}

    def fused(config):
        y = _depthwise.fused_forward(x, kernel, bias, pointwise, None, *geometry, config=config)
        return {"forward": _error(y, expected @ _numpy(pointwise))}

    families = (("direct", direct, _tuning.DIRECT_CONFIGS), ("weight_grad", weight_grad, _tuning.WEIGHT_GRAD_CONFIGS),
                ("fused", fused, _tuning.FUSED_CONFIGS))
    for family, check, configs in families:
        for index, config in enumerate(configs):
            yield family, index, config, lambda check=check, config=config: check(config)


CHECKS = {"depthwise": _check_depthwise, "separable_fused": _check_separable}


def _correctness_cases(tiny):
    """(kind, case, dtype) checks. Each (kernel, strides, dilation, padding) once
    in float32, shapes, multipliers and flags rotating; a few in bf16/fp16."""
    if tiny:
        return [
            ("depthwise", ((2, 7, 6, 3, 2), 3, (2, 2), (1, 1), "same", True, "relu"), "float32"),
            ("depthwise", ((2, 6, 7, 8, 1), (3, 1), (1, 2), (2, 1), "valid", False, "linear"), "float16"),
            ("separable_fused", ((2, 7, 6, 8, 1), 24, (1, 1), "same"), "float32"),
            # The interpreter's bfloat16 tl.dot is wrong; float16 stands in.
            ("separable_fused", ((2, 6, 6, 8, 1), 16, (2, 2), "valid"), "float16"),
        ]
    shapes = [(2, 9, 7, 8, 1), (3, 8, 8, 40, 2), (2, 17, 15, 72, 1), (2, 6, 11, 3, 1)]
    checks = []
    for i, (k, s, d, padding) in enumerate(itertools.product([1, 3, 5, (3, 1)], [1, 2], [1, 2], ["same", "valid"])):
        shape = shapes[(i // 2) % len(shapes)]
        kh, kw = (k, k) if isinstance(k, int) else k
        if padding == "valid" and ((kh - 1) * d >= shape[1] or (kw - 1) * d >= shape[2]):
            continue
        activation = ("linear", "relu", "relu6")[i % 3]
        checks.append(("depthwise", (shape, k, (s, s), (d, d), padding, i % 3 != 1, activation), "float32"))
    for dtype, (shape, s) in itertools.product(("bfloat16", "float16"), [(shapes[1], 1), (shapes[2], 2)]):
        checks.append(("depthwise", (shape, 3, (s, s), (1, 1), "same", True, "relu"), dtype))
    checks += [
        ("separable_fused", ((2, 7, 6, 8, 1), 24, (1, 1), "same"), "float32"),
        ("separable_fused", ((3, 9, 9, 40, 2), 96, (2, 2), "valid"), "float32"),
        ("separable_fused", ((3, 9, 9, 64, 1), 128, (1, 1), "same"), "bfloat16"),
    ]
    # Smoke first (run before the benchmarks): one of each kind.
    smoke = [checks[3], checks[-6], checks[-1]]
    return smoke + [c for c in checks if c not in smoke]


def run_correctness(checks, report, device, deadline, launch_configs=False):
    """Fixed launch configuration: autotuning every small shape would dominate."""
    os.environ["SEPCONV_TRITON_AUTOTUNE"] = "0"
    try:
        if launch_configs:
            _record_launch_configs(report, device, deadline)
        for kind, case, dtype in checks:
            entry = {"kind": kind, "case": repr(case), "dtype": dtype}
            if time.monotonic() > deadline:
                report.skip(entry)
                continue
            _record(report, entry, lambda: CHECKS[kind](case, dtype, device), TOLERANCE[dtype])
    finally:
        os.environ.pop("SEPCONV_TRITON_AUTOTUNE", None)


def _record_launch_configs(report, device, deadline):
    try:
        for family, index, config, check in _launch_config_checks(device):
            entry = {"kind": f"launch_config_{family}", "case": f"config {index}: {config}", "dtype": "float32"}
            if time.monotonic() > deadline:
                report.skip(entry)
                continue
            _record(report, entry, check, TOLERANCE["float32"])
    except Exception as error:  # the shared inputs could not be made
        report.add("correctness", {"kind": "launch_configs", "error": repr(error), "traceback": traceback.format_exc()})


def _record(report, entry, check, tolerance):
    try:
        errors = check()
        ok = all(e <= max(tolerance, 2 * errors.get(f"torch_{name}", 0.0))
                 for name, e in errors.items() if not name.startswith("torch_"))  # fmt: skip
        entry.update(errors=errors, tolerance=tolerance, ok=ok)
    except Exception as error:
        entry.update(error=repr(error), traceback=traceback.format_exc())
    report.add("correctness", entry)


# --- timings ----------------------------------------------------------------


def _timer(device, warmup, repeats):
    import torch

    def measure(fn):
        for _ in range(warmup):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
            times = []
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
        else:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1e3)
        return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "repeats": repeats}

    return measure


def _benchmarks(config, device, dtype_name):
    """(name, op, function) for one dtype; tensors are built lazily per entry."""
    import torch
    import torch.nn.functional as F

    from sepconv.kernels.triton import depthwise_conv2d, separable_conv2d

    dtype = getattr(torch, dtype_name)
    n, c, s, k = config.batch, config.channels, config.size, config.kernel
    g = torch.Generator().manual_seed(0)
    base = torch.randn(n, c, s, s, generator=g).to(device, dtype)
    dw_weight = (torch.randn(c, 1, k, k, generator=g) / k).to(device, dtype)
    pw_weight = (torch.randn(c, c, 1, 1, generator=g) / c**0.5).to(device, dtype)
    dense_weight = (torch.randn(c, c, k, k, generator=g) / (c * k * k) ** 0.5).to(device, dtype)
    channels_last = base.contiguous(memory_format=torch.channels_last)
    nhwc = channels_last.permute(0, 2, 3, 1)  # same memory, NHWC-shaped view: contiguous
    hwcm = dw_weight.permute(2, 3, 0, 1).contiguous()  # (k, k, C, 1)
    pointwise = pw_weight[:, :, 0, 0].T.contiguous()  # (C, F)
    upstream = torch.randn(n, c, s, s, generator=g).to(device, dtype)
    up_cl = upstream.contiguous(memory_format=torch.channels_last)
    up_nhwc = up_cl.permute(0, 2, 3, 1)
    copy_target = torch.empty_like(base)
    pad = k // 2

    def train(forward, inputs, grad):
        leaves = [t.detach().requires_grad_() for t in inputs]
        return lambda: torch.autograd.grad(forward(*leaves), leaves, grad)

    torch_dw = lambda x, w: F.conv2d(x, w, padding=pad, groups=c)  # noqa: E731
    dense = lambda x, w: F.conv2d(x, w, padding=pad)  # noqa: E731
    torch_sep = lambda x, w, p: F.conv2d(F.conv2d(x, w, padding=pad, groups=c), p)  # noqa: E731
    ours = lambda x, w: depthwise_conv2d(x, w, None, 1, "same", 1)  # noqa: E731
    ours_unfused_sep = lambda x, w, p: depthwise_conv2d(x, w, None, 1, "same", 1) @ p  # noqa: E731
    ours_sep = lambda x, w, p: separable_conv2d(x, w, p, None, None, 1, "same", 1)  # noqa: E731
    return [
        ("copy", "forward", lambda: copy_target.copy_(base)),
        ("torch_depthwise_nchw", "forward", lambda: torch_dw(base, dw_weight)),
        ("torch_depthwise_channels_last", "forward", lambda: torch_dw(channels_last, dw_weight)),
        ("triton_depthwise", "forward", lambda: ours(nhwc, hwcm)),
        ("torch_depthwise_nchw", "forward+backward", train(torch_dw, (base, dw_weight), upstream)),
        ("torch_depthwise_channels_last", "forward+backward", train(torch_dw, (channels_last, dw_weight), up_cl)),
        ("triton_depthwise", "forward+backward", train(ours, (nhwc, hwcm), up_nhwc)),
        ("torch_dense_channels_last", "forward", lambda: dense(channels_last, dense_weight)),
        ("torch_dense_channels_last", "forward+backward", train(dense, (channels_last, dense_weight), up_cl)),
        ("torch_separable_channels_last", "forward", lambda: torch_sep(channels_last, dw_weight, pw_weight)),
        ("torch_separable_channels_last", "forward+backward",
         train(torch_sep, (channels_last, dw_weight, pw_weight), up_cl)),
        ("triton_depthwise_torch_pointwise", "forward+backward",
         train(ours_unfused_sep, (nhwc, hwcm, pointwise), up_nhwc)),
        ("triton_separable_fused", "forward", lambda: ours_sep(nhwc, hwcm, pointwise)),
        ("triton_separable_fused", "forward+backward", train(ours_sep, (nhwc, hwcm, pointwise), up_nhwc)),
    ]


# (numerator, denominator): ratio of median times, < 1 means the first is faster.
RATIO_PAIRS = [
    ("triton_depthwise", "torch_depthwise_nchw"),
    ("triton_depthwise", "torch_depthwise_channels_last"),
    ("triton_depthwise", "copy"),
    ("triton_separable_fused", "torch_separable_channels_last"),
    ("triton_separable_fused", "torch_dense_channels_last"),
    ("triton_depthwise_torch_pointwise", "torch_separable_channels_last"),
    ("torch_separable_channels_last", "torch_dense_channels_last"),
]


def _ratios(benchmarks):
    times = {(b["name"], b["op"], b["dtype"]): b["median_ms"] for b in benchmarks if "median_ms" in b}
    ratios = {}
    for (name, op, dtype), value in times.items():
        for first, second in RATIO_PAIRS:
            if name != first:
                continue
            other = times.get((second, "forward" if second == "copy" else op, dtype))
            if other:
                ratios[f"{first}/{second} {op} {dtype}"] = round(value / other, 4)
    return ratios


def run_benchmarks(config, report, device, deadline):
    import torch

    measure = _timer(device, config.warmup, config.repeats)
    for dtype_name in config.dtypes:
        try:
            entries = _benchmarks(config, device, dtype_name)
        except Exception as error:
            report.add("benchmarks", {"dtype": dtype_name, "name": "setup", "op": "", "error": repr(error),
                                      "traceback": traceback.format_exc()})
            continue
        for name, op, fn in entries:
            entry = {"name": name, "op": op, "dtype": dtype_name,
                     "shape_nchw": [config.batch, config.channels, config.size, config.size], "kernel": config.kernel}
            if time.monotonic() > deadline:
                report.skip(entry)
                continue
            try:
                entry.update(measure(fn))
            except Exception as error:
                entry.update(error=repr(error), traceback=traceback.format_exc())
                if device == "cuda":
                    torch.cuda.synchronize()
            report.add("benchmarks", entry)
        del entries
        if device == "cuda":
            torch.cuda.empty_cache()


# --- command line -------------------------------------------------------------


def _missing_requirements():
    """A one-line reason this script cannot run in this process, or None."""
    backend = os.environ.setdefault("KERAS_BACKEND", "torch")
    if backend != "torch":
        return f"runs on Keras' torch backend (Triton cannot load after TensorFlow). Received: KERAS_BACKEND={backend}"
    missing = [name for name in ("torch", "triton", "keras") if importlib.util.find_spec(name) is None]
    if missing:
        return f"needs torch, triton and keras (pip install {' '.join(missing)}). Missing: {', '.join(missing)}"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Config()
    parser.add_argument("--out", default=defaults.out, help="folder for gpucheck.json")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes; without CUDA runs under the interpreter")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--dtypes", default=",".join(defaults.dtypes), help="comma-separated, for the timings")
    parser.add_argument("--budget-s", type=float, default=defaults.budget_s)
    parser.add_argument("--skip-correctness", action="store_true")
    parser.add_argument("--skip-benchmarks", action="store_true")
    parser.add_argument("--commit", default=None, help="git commit to record when the tree has no .git")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.dtypes.split(",")) - set(TOLERANCE))
    if unknown:
        parser.error(f"--dtypes must name {', '.join(TOLERANCE)}. Received: {unknown}")
    config = Config(out=args.out, tiny=args.tiny, budget_s=args.budget_s, dtypes=tuple(args.dtypes.split(",")),
                    correctness=not args.skip_correctness, benchmarks=not args.skip_benchmarks, commit=args.commit)
    if config.tiny:
        config = dataclasses.replace(config, batch=2, channels=16, size=6, warmup=1, repeats=2)
    if args.repeats is not None:
        config.repeats = args.repeats
    reason = _missing_requirements()
    if reason:
        print(f"gpucheck: {reason}", file=sys.stderr)
        return 2

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        if not config.tiny:
            print("gpucheck: no CUDA device; --tiny checks this script under Triton's interpreter", file=sys.stderr)
            return 2
        os.environ.setdefault("TRITON_INTERPRET", "1")
    device = "cuda" if cuda else "cpu"
    started = time.monotonic()
    deadline = started + config.budget_s
    report = Report(config)
    print(f"gpucheck: {report.data['environment']['device']}, writing {report.path}", flush=True)
    checks = _correctness_cases(config.tiny) if config.correctness else []
    run_correctness(checks[:3], report, device, deadline)  # smoke: one of each kind
    if config.benchmarks:
        run_benchmarks(config, report, device, deadline)
    if config.correctness:
        run_correctness(checks[3:], report, device, deadline, launch_configs=True)
    report.data["elapsed_s"] = round(time.monotonic() - started, 1)
    report.write()
    summary = report.data["correctness_summary"]
    print(f"gpucheck: correctness {summary}; ratios {json.dumps(report.data['ratios'], indent=1)}", flush=True)
    return 0 if summary["mismatched"] == 0 and summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
