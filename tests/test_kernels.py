"""The depthwise/pointwise implementations, the selection point and the autotune cache.

Every implementation is checked against independent references: the numpy
loops of `reference.py`, for outputs and for gradients (the custom JAX
gradient, torch's kernels, autodiff of the shifted slices all have to agree
with them). The "triton" implementation (torch + CUDA) is checked in
`test_triton_kernels.py`.
"""

import json
import os
import re

import keras
import numpy as np
import pytest

import reference
import sepconv
from autodiff import gradients
from helpers import BACKEND, DATA_FORMATS, to_format
from sepconv import _atomic, _provenance, kernels
from sepconv.kernels import _autotune, _dispatch

NAMES = ("native", "shifted")  # the implementations every backend and device runs

# (spatial, kernel, strides, dilation, padding, multiplier)
CASES = [
    ((9,), (3,), (1,), (1,), "valid", 1),
    ((12,), (4,), (2,), (1,), "same", 2),
    ((11,), (3,), (1,), (3,), "same", 1),
    ((7, 9), (3, 3), (1, 1), (1, 1), "same", 1),
    ((8, 8), (3, 3), (2, 2), (1, 1), "same", 1),
    ((9, 8), (3, 2), (2, 1), (1, 1), "same", 3),
    ((10, 11), (3, 3), (1, 1), (2, 2), "same", 1),
    ((11, 9), (3, 3), (2, 2), (2, 1), "valid", 2),
    ((6, 7), (2, 2), (2, 2), (1, 1), "same", 1),
    ((9, 8), (5, 5), (1, 1), (1, 1), "same", 2),  # kernels above 3x3 at stride 1: TensorFlow's gradient by blocks
    ((10, 9), (4, 7), (1, 1), (1, 1), "valid", 1),
    ((8, 9), (4, 6), (1, 1), (1, 1), "same", 1),
    ((5, 6, 4), (3, 3, 3), (1, 1, 1), (1, 1, 1), "same", 1),
    ((6, 5, 7), (3, 2, 3), (2, 1, 2), (1, 1, 1), "valid", 2),
    ((7, 6, 5), (3, 3, 1), (1, 2, 1), (2, 1, 1), "same", 1),
]


def _case_id(case):
    spatial, kernel, strides, dilation, padding, multiplier = case
    join = lambda values: "x".join(map(str, values))  # noqa: E731
    return f"{len(spatial)}d-{join(spatial)}-k{join(kernel)}-s{join(strides)}-d{join(dilation)}-{padding}-m{multiplier}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_depthwise_matches_reference(case, data_format, name, rng):
    spatial, ksize, strides, dilation, padding, multiplier = case
    x = rng.normal(size=(2, *spatial, 3)).astype("float32")
    kernel = rng.normal(size=(*ksize, 3, multiplier)).astype("float32")
    expected = reference.depthwise(x, kernel, strides, padding, dilation)
    g = rng.normal(size=expected.shape).astype("float32")

    def depthwise(x, kernel):
        return kernels.implementation(name)(x, kernel, strides, padding, data_format, dilation)

    got = keras.ops.convert_to_numpy(depthwise(to_format(x, data_format), kernel))
    np.testing.assert_allclose(got, to_format(expected, data_format), rtol=1e-5, atol=1e-4)

    dx, dkernel = gradients(depthwise, [to_format(x, data_format), kernel], to_format(g, data_format))
    expected_dx, expected_dkernel = reference.depthwise_gradients(x, kernel, g, strides, padding, dilation)
    np.testing.assert_allclose(dx, to_format(expected_dx, data_format), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dkernel, expected_dkernel, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize(("strides", "size"), [((1, 1), 3), ((2, 2), 3), ((1, 1), 5)], ids=["s1", "s2", "s1-5x5"])
@pytest.mark.parametrize("name", NAMES)
def test_depthwise_16_bits_matches_reference(name, strides, size, dtype, rng):
    """Forward and gradients in 16 bits (paths that compute some of it in float32 included)."""
    x = rng.normal(size=(4, 9, 8, 5)).astype("float32")
    kernel = rng.normal(size=(size, size, 5, 2)).astype("float32")
    narrow = lambda t: keras.ops.cast(keras.ops.convert_to_tensor(t), dtype)  # noqa: E731

    def depthwise(x, kernel):
        return kernels.implementation(name)(narrow(x), narrow(kernel), strides, "same", "channels_last", (1, 1))

    got = depthwise(x, kernel)
    assert keras.backend.standardize_dtype(got.dtype) == dtype
    expected = reference.depthwise(x, kernel, strides, "same", (1, 1))
    # bfloat16 keeps 8 significant bits: inputs round by up to 2^-8 relative,
    # and a 9- or 25-term sum of such products by a few times that.
    got = keras.ops.convert_to_numpy(keras.ops.cast(got, "float32"))
    np.testing.assert_allclose(got, expected, rtol=0.05, atol=0.1)
    g = rng.normal(size=expected.shape).astype("float32")
    ours = gradients(lambda x, k: keras.ops.cast(depthwise(x, k), "float32"), [x, kernel], g)
    for got, want in zip(ours, reference.depthwise_gradients(x, kernel, g, strides, "same", (1, 1))):
        assert np.abs(got - want).max() <= 0.03 * np.abs(want).max()


@pytest.mark.parametrize("use_bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("spatial", [(7,), (5, 6), (3, 4, 5)], ids=lambda s: f"{len(s)}d")
def test_pointwise_matches_reference(spatial, data_format, use_bias, rng):
    x = rng.normal(size=(2, *spatial, 6)).astype("float32")
    kernel = rng.normal(size=(1,) * len(spatial) + (6, 4)).astype("float32")
    bias = rng.normal(size=(4,)).astype("float32")
    g = rng.normal(size=(2, *spatial, 4)).astype("float32")

    def pointwise(x, kernel, *bias):
        return kernels.pointwise_conv(x, kernel, data_format, *bias)

    inputs = [to_format(x, data_format), kernel] + ([bias] if use_bias else [])
    got = keras.ops.convert_to_numpy(pointwise(*inputs))
    expected = reference.pointwise(x, kernel) + (bias if use_bias else 0)
    np.testing.assert_allclose(got, to_format(expected, data_format), rtol=1e-5, atol=1e-5)
    dx, dkernel, *dbias = gradients(pointwise, inputs, to_format(g, data_format))
    matrix = kernel.reshape(6, 4)
    np.testing.assert_allclose(dx, to_format(g @ matrix.T, data_format), rtol=1e-5, atol=1e-5)
    expected_dkernel = (x.reshape(-1, 6).T @ g.reshape(-1, 4)).reshape(kernel.shape)
    np.testing.assert_allclose(dkernel, expected_dkernel, rtol=1e-5, atol=1e-4)
    if use_bias:
        np.testing.assert_allclose(dbias[0], g.reshape(-1, 4).sum(0), rtol=1e-5, atol=1e-4)


def test_pointwise_in_a_model_of_unknown_image_size_matches_reference(rng):
    # the spatial shape is unknown while the model is built: the matmul on the rank-4 tensor
    inputs = keras.Input((None, None, 6))
    kernel = rng.normal(size=(1, 1, 6, 4)).astype("float32")
    layer = keras.layers.Lambda(lambda x: kernels.pointwise_conv(x, kernel, "channels_last"))
    model = keras.Model(inputs, layer(inputs))
    for size in ((5, 6), (3, 7)):
        x = rng.normal(size=(2, *size, 6)).astype("float32")
        got = keras.ops.convert_to_numpy(model(x))
        np.testing.assert_allclose(got, reference.pointwise(x, kernel), rtol=1e-5, atol=1e-5)


def test_jax_shifted_gradient_is_the_custom_one():
    """On JAX "shifted" carries a hand-written gradient, not autodiff of the slices."""
    if BACKEND != "jax":
        pytest.skip("JAX only")
    from sepconv.kernels import _jax

    assert kernels.implementation("shifted") is _jax.depthwise_shifted


def test_jax_shifted_gradient_reads_its_incoming_gradient_once():
    """An elementwise producer of the incoming gradient is computed once, not once per tap.

    The gradient equals autodiff of the plain slices, and the compiled step keeps the
    dynamic_update_slice that stops XLA:CPU from fusing the producer into each tap.
    """
    if BACKEND != "jax":
        pytest.skip("JAX only")
    import jax

    from sepconv.kernels import _jax, _portable

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 5, 4)).astype("float32")
    kernel = rng.normal(size=(3, 3, 4, 1)).astype("float32")
    scale = rng.normal(size=(4,)).astype("float32")
    args = ((1, 1), "same", "channels_last", (1, 1))

    def loss(depthwise):
        # The cotangent reaching the depthwise step comes from an elementwise op.
        return lambda x, kernel: (keras.ops.relu(depthwise(x, kernel, *args) * scale) ** 2).sum()

    grad = jax.jit(jax.grad(loss(_jax.depthwise_shifted), argnums=(0, 1)))
    got = grad(x, kernel)
    want = jax.grad(loss(_portable.depthwise_shifted), argnums=(0, 1))(x, kernel)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)
    if jax.default_backend() == "cpu":
        assert "dynamic-update-slice" in grad.lower(x, kernel).compile().as_text()


def _call(shape, kernel_shape, dtype="float32"):
    x = keras.ops.zeros(shape, dtype=dtype)
    kernel = keras.ops.zeros(kernel_shape, dtype=dtype)
    rank = len(shape) - 2
    return x, kernel, (1,) * rank, "same", "channels_last", (1,) * rank


def test_auto_rule_per_backend():
    """The measured rule of `_dispatch._auto_rule` (these machines have no GPU)."""
    rule = {
        ("jax", 1, "float32"): "shifted",
        ("jax", 2, "float32"): "shifted",
        ("jax", 3, "float32"): "shifted",
        ("tensorflow", 1, "float32"): "native",
        ("tensorflow", 2, "float32"): "native",
        ("tensorflow", 3, "float32"): "shifted",
        ("torch", 2, "float32"): "native",
        ("torch", 3, "float32"): "native",
        ("torch", 2, "bfloat16"): "native",  # in float32 or natively: see _torch.depthwise_native
    }
    for (backend, rank, dtype), expected in rule.items():
        if backend != BACKEND:
            continue
        call = _call((2,) + (6,) * rank + (3,), (3,) * rank + (3, 1), dtype)
        assert kernels.resolve(*call) == expected, (rank, dtype)


def test_forced_implementation_wins_and_is_restored():
    call = _call((2, 6, 6, 3), (3, 3, 3, 1))
    for name in NAMES:
        with kernels.use_depthwise_implementation(name):
            assert kernels.resolve(*call) == name
    assert kernels.get_depthwise_implementation() == "auto"


def test_environment_variable_selects(monkeypatch):
    monkeypatch.setattr(_dispatch, "_setting", None)  # nothing set in code: the variable decides
    monkeypatch.setenv("SEPCONV_DEPTHWISE", "shifted")
    assert kernels.resolve(*_call((2, 6, 6, 3), (3, 3, 3, 1))) == "shifted"
    monkeypatch.setenv("SEPCONV_DEPTHWISE", "fastest")
    message = "^SEPCONV_DEPTHWISE must be one of 'auto', 'native', 'shifted', 'triton'.*"
    message += " Received: SEPCONV_DEPTHWISE='fastest'$"
    with pytest.raises(ValueError, match=message):
        kernels.resolve(*_call((2, 6, 6, 3), (3, 3, 3, 1)))


def test_unknown_implementation_name_is_reported():
    with pytest.raises(ValueError, match="^name must be one of 'native', 'shifted', 'triton'.* Received: name='auto'$"):
        kernels.implementation("auto")


def _cuda():
    return _provenance.device(BACKEND) != "CPU"


def test_available_implementations(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    names = kernels.available_implementations()
    if BACKEND == "torch" and _cuda() and "triton" in names:
        assert names == ("auto", "native", "shifted", "triton")
    else:  # "triton" only on torch + CUDA
        assert names == ("auto", "native", "shifted")
    assert kernels.available_implementations(rank=3) == ("auto", "native", "shifted")


@pytest.mark.parametrize("through", ["set", "environment", "implementation"])
def test_triton_is_refused_where_it_cannot_run(through, monkeypatch):
    if BACKEND == "torch" and _cuda():
        pytest.skip("this machine runs the Triton kernels")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(_dispatch, "_setting", None)
    received = {
        "tensorflow": "backend='tensorflow'",
        "jax": "backend='jax'",
        "torch": "backend='torch', (device='CPU'|triton=None)",
    }[BACKEND]
    argument = "SEPCONV_DEPTHWISE" if through == "environment" else "name"
    message = (
        "^" + re.escape("The 'triton' depthwise implementation runs on the torch backend with a CUDA device "
                        "(or TRITON_INTERPRET=1) and triton installed, imported before any TensorFlow. "
                        f"Received: {argument}='triton', ")
        + received + "$"
    )
    with pytest.raises(ValueError, match=message):
        if through == "set":
            kernels.set_depthwise_implementation("triton")
        elif through == "environment":
            monkeypatch.setenv("SEPCONV_DEPTHWISE", "triton")
            kernels.get_depthwise_implementation()
        else:
            kernels.implementation("triton")
    monkeypatch.delenv("SEPCONV_DEPTHWISE", raising=False)
    assert kernels.get_depthwise_implementation() == "auto"  # a refused name changes nothing


def test_auto_is_resolved_once_per_call_signature(monkeypatch):
    resolved = []
    auto = _dispatch._auto
    monkeypatch.setattr(_dispatch, "_auto", lambda call, x, kernel: resolved.append(call) or auto(call, x, kernel))
    layer = sepconv.DepthwiseSeparableConv2D(4, 3, padding="same")
    x = np.zeros((2, 6, 6, 3), "float32")
    for _ in range(3):
        layer(x)
    assert len(resolved) == 1
    layer(np.zeros((3, 6, 6, 3), "float32"))  # a new shape is a new call signature
    assert [call["input_shape"] for call in resolved] == [(2, 6, 6, 3), (3, 6, 6, 3)]


def test_forced_name_wins_over_the_remembered_choice():
    layer = sepconv.DepthwiseSeparableConv2D(4, 3, padding="same")
    x = np.zeros((2, 6, 6, 3), "float32")
    with kernels.record_depthwise_calls() as calls:
        layer(x)  # "auto" resolved and remembered
        for name in NAMES:
            with kernels.use_depthwise_implementation(name):
                layer(x)
        layer(x)
    auto = calls[0]["implementation"]
    assert [call["implementation"] for call in calls] == [auto, _other(auto)]  # distinct calls only
    with kernels.record_depthwise_calls() as calls:
        with kernels.use_depthwise_implementation(_other(auto)):
            layer(x)
        layer(x)
    assert [call["implementation"] for call in calls] == [_other(auto), auto]


# --- the autotune cache ---------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPCONV_CACHE_DIR", str(tmp_path))
    return tmp_path


def _key(call):
    x, kernel, strides, padding, data_format, dilation = call
    return _autotune.cache_key(
        tuple(x.shape), tuple(kernel.shape), strides, padding, data_format, dilation, "float32"
    )


def _other(name):
    return next(other for other in NAMES if other != name)


def test_cache_path_follows_environment(cache_dir):
    assert kernels.autotune_cache_path() == cache_dir / "depthwise-autotune.json"


def test_stored_choice_is_reused_by_auto(cache_dir):
    call = _call((2, 6, 6, 3), (3, 3, 3, 1))
    ruled = kernels.resolve(*call)
    path = _autotune.store(_key(call), _other(ruled), {"native": 1.0, "shifted": 2.0})
    assert path == cache_dir / "depthwise-autotune.json"
    assert kernels.resolve(*call) == _other(ruled)
    # Another shape has no entry: the rule still decides.
    assert kernels.resolve(*_call((3, 6, 6, 3), (3, 3, 3, 1))) == ruled
    # A forced implementation beats the cache.
    with kernels.use_depthwise_implementation(ruled):
        assert kernels.resolve(*call) == ruled


def test_store_is_atomic_and_keeps_other_entries(cache_dir, monkeypatch):
    first, second = _call((2, 6, 6, 3), (3, 3, 3, 1)), _call((4, 6, 6, 3), (3, 3, 3, 1))
    _autotune.store(_key(first), "native", {"native": 1.0})
    _autotune.store(_key(second), "shifted", {"shifted": 1.0})
    assert sorted(os.listdir(cache_dir)) == ["depthwise-autotune.json"]  # no temporary file left
    data = json.loads((cache_dir / "depthwise-autotune.json").read_text())
    assert data["version"] == _autotune.VERSION
    assert {entry["implementation"] for entry in data["entries"].values()} == {"native", "shifted"}
    before = (cache_dir / "depthwise-autotune.json").read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic.os, "replace", interrupted)  # the new file is written, not yet in place
    with pytest.raises(KeyboardInterrupt):
        _autotune.store(_key(first), "shifted", {"shifted": 0.5})
    # The written file never replaced the cache and was removed.
    assert (cache_dir / "depthwise-autotune.json").read_text() == before
    assert sorted(os.listdir(cache_dir)) == ["depthwise-autotune.json"]


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"version": 1, "entries": {}}',
        f'{{"version": {_autotune.VERSION}, "entries": []}}',
    ],
    ids=["garbage", "not-a-dict", "old-version", "bad-entries"],
)
def test_corrupt_cache_is_ignored_then_replaced(cache_dir, text):
    call = _call((2, 6, 6, 3), (3, 3, 3, 1))
    ruled = kernels.resolve(*call)
    (cache_dir / "depthwise-autotune.json").write_text(text)
    with pytest.warns(UserWarning, match="Ignoring the unreadable autotune cache"):
        assert kernels.resolve(*call) == ruled
    with pytest.warns(UserWarning, match="Ignoring the unreadable autotune cache"):
        _autotune.store(_key(call), _other(ruled), {})  # reads what is there first
    assert kernels.resolve(*call) == _other(ruled)


def test_store_in_this_process_replaces_remembered_choices(cache_dir):
    call = _call((2, 6, 6, 3), (3, 3, 3, 1))
    with kernels.record_depthwise_calls() as calls:
        kernels.depthwise_conv(*call)
    ruled = calls[0]["implementation"]
    _autotune.store(_key(call), _other(ruled), {})
    with kernels.record_depthwise_calls() as calls:
        kernels.depthwise_conv(*call)
    assert calls[0]["implementation"] == _other(ruled)


def test_cache_key_names_the_device_as_provenance_does():
    key = json.loads(_key(_call((2, 6, 6, 3), (3, 3, 3, 1))))
    assert key["backend"] == BACKEND
    assert key["device"] == kernels.device_name()
    device = _provenance.device(BACKEND)
    if device == "CPU":
        assert kernels.device_name() == f"CPU: {_provenance.cpu_name()} ({_provenance.usable_cores()} cores)"
    else:
        assert kernels.device_name() == device


def test_unknown_implementation_in_cache_is_ignored(cache_dir):
    call = _call((2, 6, 6, 3), (3, 3, 3, 1))
    ruled = kernels.resolve(*call)
    _autotune.store(_key(call), "removed_implementation", {})
    assert kernels.resolve(*call) == ruled


def test_record_calls_collects_distinct_calls():
    x, kernel, strides, padding, data_format, dilation = _call((2, 6, 6, 3), (3, 3, 3, 1))
    with kernels.record_depthwise_calls() as calls:
        for _ in range(2):
            kernels.depthwise_conv(x, kernel, strides, padding, data_format, dilation)
        kernels.depthwise_conv(x, kernel, (2, 2), padding, data_format, dilation)
    assert [call["strides"] for call in calls] == [(1, 1), (2, 2)]
    assert calls[0]["input_shape"] == (2, 6, 6, 3)
    assert calls[0]["implementation"] == kernels.resolve(x, kernel, strides, padding, data_format, dilation)
    kernels.depthwise_conv(x, kernel, strides, padding, data_format, dilation)
    assert len(calls) == 2  # recording stopped with the block
