"""The depthwise/pointwise implementations, the selection point and the autotune cache.

Every implementation is checked against independent references: the numpy
loop of `reference.py` for outputs, and a plain backpropagation loop below
for gradients (the custom JAX gradient, torch's kernels, autodiff of the
shifted slices all have to agree with it).
"""

import itertools
import json
import os

import keras
import numpy as np
import pytest

import reference
from autodiff import gradients
from sepconv import kernels
from sepconv.kernels import _autotune, _select

BACKEND = keras.backend.backend()
NAMES = tuple(name for name in kernels.available_implementations() if name != "auto")

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
    ((5, 6, 4), (3, 3, 3), (1, 1, 1), (1, 1, 1), "same", 1),
    ((6, 5, 7), (3, 2, 3), (2, 1, 2), (1, 1, 1), "valid", 2),
    ((7, 6, 5), (3, 3, 1), (1, 2, 1), (2, 1, 1), "same", 1),
]


def _case_id(case):
    spatial, kernel, strides, dilation, padding, multiplier = case
    join = lambda values: "x".join(map(str, values))  # noqa: E731
    return f"{len(spatial)}d-{join(spatial)}-k{join(kernel)}-s{join(strides)}-d{join(dilation)}-{padding}-m{multiplier}"


def _same_pads(size, kernel, stride, dilation):
    effective = (kernel - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def depthwise_gradients(x, kernel, g, strides, padding, dilation):
    """d(sum(depthwise(x, kernel) * g)) / d(x, kernel), by a backpropagation loop.

    channels_last `x` (N, *spatial, C), `kernel` (*k, C, M), `g` like the output.
    Each output position scatters its gradient back to the inputs under each tap.
    """
    rank = x.ndim - 2
    ksize, (channels, multiplier) = kernel.shape[:rank], kernel.shape[rank:]
    pads = [(0, 0)] * rank
    if padding == "same":
        pads = [_same_pads(n, k, s, d) for n, k, s, d in zip(x.shape[1:-1], ksize, strides, dilation)]
    xp = np.pad(x.astype(np.float64), [(0, 0), *pads, (0, 0)])
    dxp, dkernel = np.zeros_like(xp), np.zeros(kernel.shape)
    grouped = g.reshape(g.shape[:-1] + (channels, multiplier)).astype(np.float64)
    for position in itertools.product(*(range(o) for o in g.shape[1:-1])):
        out = grouped[(slice(None), *position)]  # (N, C, M)
        for tap in itertools.product(*(range(k) for k in ksize)):
            index = (slice(None), *(p * s + t * d for p, s, t, d in zip(position, strides, tap, dilation)))
            dxp[index] += np.einsum("ncm,cm->nc", out, kernel[tap])
            dkernel[tap] += np.einsum("nc,ncm->cm", xp[index], out)
    crop = (slice(None), *(slice(a, a + n) for (a, _), n in zip(pads, x.shape[1:-1])), slice(None))
    return dxp[crop], dkernel


def _to_format(x, data_format):
    return x if data_format == "channels_last" else np.moveaxis(x, -1, 1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_depthwise_matches_reference(case, data_format, name, rng):
    spatial, ksize, strides, dilation, padding, multiplier = case
    x = rng.normal(size=(2, *spatial, 3)).astype("float32")
    kernel = rng.normal(size=(*ksize, 3, multiplier)).astype("float32")
    expected = reference.depthwise(x, kernel, strides, padding, dilation)
    g = rng.normal(size=expected.shape).astype("float32")

    def depthwise(x, kernel):
        return kernels.implementation(name)(x, kernel, strides, padding, data_format, dilation)

    got = keras.ops.convert_to_numpy(depthwise(_to_format(x, data_format), kernel))
    np.testing.assert_allclose(got, _to_format(expected, data_format), rtol=1e-5, atol=1e-4)

    dx, dkernel = gradients(depthwise, [_to_format(x, data_format), kernel], _to_format(g, data_format))
    expected_dx, expected_dkernel = depthwise_gradients(x, kernel, g, strides, padding, dilation)
    np.testing.assert_allclose(dx, _to_format(expected_dx, data_format), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dkernel, expected_dkernel, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_depthwise_bfloat16_matches_reference(name, rng):
    x = rng.normal(size=(4, 9, 8, 5)).astype("float32")
    kernel = rng.normal(size=(3, 3, 5, 2)).astype("float32")
    to_bf16 = lambda t: keras.ops.convert_to_tensor(t, dtype="bfloat16")  # noqa: E731
    got = kernels.implementation(name)(to_bf16(x), to_bf16(kernel), (1, 1), "same", "channels_last", (1, 1))
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    expected = reference.depthwise(x, kernel, (1, 1), "same", (1, 1))
    # bfloat16 keeps 8 significant bits: inputs round by up to 2^-8 relative,
    # and a 9-term sum of such products by a few times that.
    got = keras.ops.convert_to_numpy(keras.ops.cast(got, "float32"))
    np.testing.assert_allclose(got, expected, rtol=0.05, atol=0.1)


@pytest.mark.parametrize("use_bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("spatial", [(7,), (5, 6), (3, 4, 5)], ids=lambda s: f"{len(s)}d")
def test_pointwise_matches_reference(spatial, data_format, use_bias, rng):
    x = rng.normal(size=(2, *spatial, 6)).astype("float32")
    kernel = rng.normal(size=(1,) * len(spatial) + (6, 4)).astype("float32")
    bias = rng.normal(size=(4,)).astype("float32")
    g = rng.normal(size=(2, *spatial, 4)).astype("float32")

    def pointwise(x, kernel, *bias):
        return kernels.pointwise_conv(x, kernel, data_format, *bias)

    inputs = [_to_format(x, data_format), kernel] + ([bias] if use_bias else [])
    got = keras.ops.convert_to_numpy(pointwise(*inputs))
    expected = reference.pointwise(x, kernel) + (bias if use_bias else 0)
    np.testing.assert_allclose(got, _to_format(expected, data_format), rtol=1e-5, atol=1e-5)
    dx, dkernel, *dbias = gradients(pointwise, inputs, _to_format(g, data_format))
    matrix = kernel.reshape(6, 4)
    np.testing.assert_allclose(dx, _to_format(g @ matrix.T, data_format), rtol=1e-5, atol=1e-5)
    expected_dkernel = (x.reshape(-1, 6).T @ g.reshape(-1, 4)).reshape(kernel.shape)
    np.testing.assert_allclose(dkernel, expected_dkernel, rtol=1e-5, atol=1e-4)
    if use_bias:
        np.testing.assert_allclose(dbias[0], g.reshape(-1, 4).sum(0), rtol=1e-5, atol=1e-4)


def test_jax_shifted_gradient_is_the_custom_one():
    """On JAX "shifted" carries a hand-written gradient, not autodiff of the slices."""
    if BACKEND != "jax":
        pytest.skip("JAX only")
    from sepconv.kernels import _jax

    assert kernels.implementation("shifted") is _jax.depthwise_shifted


def _call(shape, kernel_shape, dtype="float32"):
    x = keras.ops.zeros(shape, dtype=dtype)
    kernel = keras.ops.zeros(kernel_shape, dtype=dtype)
    rank = len(shape) - 2
    return x, kernel, (1,) * rank, "same", "channels_last", (1,) * rank


def test_auto_rule_per_backend():
    """The measured rule of `_select._auto_rule` (these machines have no GPU)."""
    rule = {
        ("jax", 1, "float32"): "shifted",
        ("jax", 2, "float32"): "shifted",
        ("jax", 3, "float32"): "shifted",
        ("tensorflow", 1, "float32"): "native",
        ("tensorflow", 2, "float32"): "native",
        ("tensorflow", 3, "float32"): "shifted",
        ("torch", 2, "float32"): "native",
        ("torch", 3, "float32"): "native",
        ("torch", 2, "bfloat16"): "shifted",
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
    monkeypatch.setattr(_select, "_setting", None)  # nothing set in code: the variable decides
    monkeypatch.setenv("SEPCONV_DEPTHWISE", "shifted")
    assert kernels.resolve(*_call((2, 6, 6, 3), (3, 3, 3, 1))) == "shifted"
    monkeypatch.setenv("SEPCONV_DEPTHWISE", "fastest")
    with pytest.raises(ValueError, match="SEPCONV_DEPTHWISE must be one of 'auto', 'native', 'shifted'. "
                       "Received: SEPCONV_DEPTHWISE='fastest'"):
        kernels.resolve(*_call((2, 6, 6, 3), (3, 3, 3, 1)))


def test_unknown_implementation_name_is_reported():
    with pytest.raises(ValueError, match="name must be one of 'native', 'shifted'. Received: name='auto'"):
        kernels.implementation("auto")


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

    monkeypatch.setattr(_autotune.json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _autotune.store(_key(first), "shifted", {"shifted": 0.5})
    # The half-written file never replaced the cache and was removed.
    assert (cache_dir / "depthwise-autotune.json").read_text() == before
    assert sorted(os.listdir(cache_dir)) == ["depthwise-autotune.json"]


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", '{"version": 0, "entries": {}}', '{"version": 1, "entries": []}'],
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
