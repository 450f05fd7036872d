"""Training on several devices and processes (`sepconv.training._distribution`).

The settings, the sharded batches and the one-line errors are tested in this process on
every backend. Runs on several devices need JAX started with
`XLA_FLAGS=--xla_force_host_platform_device_count=N` or with `jax.distributed`, so they
run in subprocesses (`distributed_worker.py`), JAX whatever this process's backend, and
are marked slow (run once, in the TensorFlow round of `make test`):

* one process, two virtual CPU devices, with the weight average, against a one-device run
  with it (the reference);
* two processes over 127.0.0.1, one device each; process 1 is killed with SIGKILL in the
  middle of epoch 2, process 0 must stop by itself, and `resume` on both processes
  finishes the run.

Tolerance: 1e-5 relative on losses and accuracies. The runs differ from the reference
only in the order of float32 sums (a loss or gradient summed over 2 x 8 images instead of
16, plus an all-reduce): a few ulp (about 1e-7) per step, grown by the 12 Adam steps of
a run. On this CPU, XLA gave bit-identical curves; other devices (GPUs) reduce in other
orders, hence a tolerance at all.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import sepconv
from sepconv.cli import main
from sepconv.data import Batches, ShardedBatches
from sepconv.training import DistributionConfig, start_distribution

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
RTOL = 1e-5
COLUMNS = ("loss", "accuracy", "val_loss", "val_accuracy")
TIMEOUT = 15  # seconds: for the processes to meet, and before a silent process stops the others


# --- settings and errors, in this process -----------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(devices="many"), "devices must be 'all' or a positive integer. Received: devices='many'"),
        (dict(devices=0), "devices must be positive"),
        (dict(coordinator="10.0.0.1"), "coordinator must be HOST:PORT, e.g. 10.0.0.1:1234. Received: coordinator='10.0.0.1'"),
        (dict(num_processes=2, process_id=0), "coordinator (HOST:PORT of process 0) is needed with num_processes=2. "
                                              "Received: coordinator=None"),
        (dict(num_processes=2, coordinator="h:1"), "process_id is needed with num_processes=2. Received: process_id=None"),
        (dict(num_processes=2, coordinator="h:1", process_id=2), "process_id must be less than num_processes=2. "
                                                                  "Received: process_id=2"),
        (dict(timeout=0), "timeout must be"),
    ],
)  # fmt: skip
def test_config_errors(fields, message):
    with pytest.raises(ValueError) as error:
        DistributionConfig(**fields)
    assert str(error.value).startswith(message)


def test_config_from_keras_environment_variables():
    environ = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:2345",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
        "KERAS_DISTRIBUTION_PROCESS_ID": "1",
    }
    config = DistributionConfig.from_environment(environ)
    assert (config.coordinator, config.num_processes, config.process_id) == ("10.0.0.1:1234,10.0.0.2:2345", 2, 1)
    assert config.multi_process and config.enabled
    given = DistributionConfig.from_environment(environ, process_id=0, coordinator="h:9")
    assert (given.coordinator, given.process_id) == ("h:9", 0)
    assert not DistributionConfig.from_environment({}).enabled


def test_no_distribution_is_one_device():
    placement = start_distribution(None, 15)
    assert (placement.devices, placement.processes, placement.writer, placement.distribution) == (1, 1, True, None)
    assert start_distribution(DistributionConfig(), 15) is placement


def test_a_process_keeps_its_distribution(monkeypatch):
    from sepconv.training import _distribution

    monkeypatch.setitem(_distribution._started, DistributionConfig(devices=2), _distribution.SINGLE)
    with pytest.raises(ValueError) as error:
        start_distribution(None, 16)
    assert str(error.value) == (
        "one process trains with one distribution (DistributionConfig(devices=2, coordinator=None, "
        "num_processes=None, process_id=None, timeout=300.0)); start a new process for another. "
        "Received: distribution=None"
    )


@pytest.mark.parametrize("augment, cutout, trivial_augment", [(False, 0, False), (True, 0, False), (True, 3, False),
                                                             (False, 0, True)])  # fmt: skip
@pytest.mark.parametrize("n", [30, 27, 32])
def test_sharded_batches_split_each_global_batch(augment, cutout, trivial_augment, n):
    """Shards of 2 processes, 4 devices: together the global batches, cut to multiples of 4."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 6, 6, 3), dtype=np.uint8)
    y = np.arange(n)
    kwargs = dict(batch_size=8, augment=augment, cutout=cutout, trivial_augment=trivial_augment, seed=3)
    whole = Batches(x, y, **kwargs)
    shards = [ShardedBatches(x, y, shard=i, shards=2, multiple=4, **kwargs) for i in range(2)]
    cut = {30: 4, 27: 0, 32: 8}[n]  # the last batch: 6 -> 4 images, 3 -> none, 8 -> 8
    assert len(shards[0]) == len(shards[1]) == 3 + (cut > 0)
    assert shards[0].images_per_epoch == 24 + cut
    for epoch in range(2):
        for batches in (whole, *shards):
            batches.epoch = epoch
            batches._order = batches._epoch_order()
        labels = []
        for index in range(len(shards[0])):
            (xa, ya), (xb, yb) = shards[0][index], shards[1][index]
            xw, yw = whole[index]
            size = len(ya)
            assert len(yb) == size and 2 * size == (8 if index < 3 else cut)
            np.testing.assert_array_equal(np.concatenate([ya, yb]), yw[: 2 * size])
            np.testing.assert_array_equal(np.concatenate([xa, xb]), xw[: 2 * size])
            labels += [*ya, *yb]
        assert len(set(labels)) == len(labels) == 24 + cut  # no image twice in an epoch


@pytest.mark.parametrize("shard", [0, 1])
def test_sharded_batches_mix_each_share_with_its_own_reverse(shard):
    """With mixup a process mixes only its share, with the global batch's weight."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(32, 6, 6, 3), dtype=np.uint8)
    y = np.arange(32) % 10
    kwargs = dict(batch_size=8, augment=True, cutout=3, seed=3, shard=shard, shards=2, multiple=2)
    plain, mixed = ShardedBatches(x, y, **kwargs), ShardedBatches(x, y, mixup=0.5, num_classes=10, **kwargs)
    whole = Batches(x, y, batch_size=8, augment=True, cutout=3, seed=3, mixup=0.5, num_classes=10)
    for index in range(len(plain)):
        (images, labels), (mixed_images, targets) = plain[index], mixed[index]
        lam = whole._plan(index)[3]
        one_hot = np.eye(10)[labels]
        np.testing.assert_allclose(targets, lam * one_hot + (1 - lam) * one_hot[::-1], atol=1e-6)
        np.testing.assert_allclose(mixed_images, lam * images + (1 - lam) * images[::-1], atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shard=2, shards=2, multiple=2), "shard must be less than shards=2. Received: shard=2"),
        (dict(shard=0, shards=2, multiple=3), "multiple must be a multiple of shards=2. Received: multiple=3"),
        (dict(shard=0, shards=1, multiple=3), "batch_size must be divisible by multiple=3. Received: batch_size=8"),
    ],
)
def test_sharded_batches_errors(kwargs, message):
    x = np.zeros((16, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError) as error:
        ShardedBatches(x, np.zeros(16), batch_size=8, **kwargs)
    assert str(error.value) == message


def _cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def test_cli_multi_process_needs_a_coordinator(capsys):
    code, err = _cli(capsys, "train", "vgg", "--num-processes", "2", "--process-id", "0")
    assert code == 2
    assert err == (
        "sepconv train: error: coordinator (HOST:PORT of process 0) is needed with num_processes=2. "
        "Received: coordinator=None"
    )


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the JAX backend has keras.distribution")
def test_cli_backend_without_keras_distribution(capsys):
    code, err = _cli(capsys, "compare", "vgg", "vgg_separable", "--devices", "2")
    assert code == 2
    assert err == (
        "sepconv compare: error: training on several devices or processes needs the JAX backend "
        "(keras.distribution works on JAX only in Keras 3.15); set KERAS_BACKEND=jax. "
        f"Received: KERAS_BACKEND={keras.backend.backend()}"
    )


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="counts JAX devices in this process")
def test_cli_more_devices_than_available(capsys):
    import jax

    code, err = _cli(capsys, "train", "vgg", "--devices", "64")
    assert code == 2
    assert err == (
        f"sepconv train: error: devices must be at most the {jax.local_device_count()} CPU device(s) this process "
        "sees (on a CPU, more come from XLA_FLAGS=--xla_force_host_platform_device_count=N). Received: devices=64"
    )


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="starts JAX's distributed runtime")
def test_cli_unreachable_coordinator_times_out(capsys):
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    code, err = _cli(capsys, "train", "vgg", "--coordinator", address, "--num-processes", "2",
                     "--process-id", "1", "--timeout", "1.5")  # fmt: skip
    assert time.monotonic() - start < 10
    assert code == 2
    assert err == (
        "sepconv train: error: the coordinator did not answer within 1.5 s (timeout); start process 0 there, or "
        f"check the address and the firewall. Received: coordinator={address}"
    )


# --- runs on several devices and processes, in subprocesses ---------------------------------


def _environment(devices):
    source = os.path.dirname(os.path.dirname(sepconv.__file__))  # this sepconv, not another install
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_DISTRIBUTION_", "XLA_FLAGS"))}
    env.update(
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        PYTHONPATH=os.pathsep.join([source, env.get("PYTHONPATH", "")]),
    )
    return env


def _launch(spec, devices=1, log=None, **env):
    return subprocess.Popen(
        [sys.executable, WORKER, json.dumps(spec)],
        env={**_environment(devices), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _finish(process, log, seconds=480):
    try:
        code = process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        code = "timed out"
    if code != 0:
        with open(log.name) as f:
            pytest.fail(f"worker exited with {code}:\n{f.read()[-3000:]}")


def _read(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both launches at once: the one-process runs, and two processes killed then resumed."""
    root = tmp_path_factory.mktemp("distribution")
    logs = {name: open(root / f"{name}.log", "w") for name in ("devices", "p0", "p1", "r0", "r1")}
    devices = _launch(
        dict(
            mode="train", layers=True, out=str(root / "devices.json"), reference=str(root / "reference"),
            folder=str(root / "two-devices"), distribution=dict(devices=2), config=dict(ema_momentum=0.5),
            cli_errors=[["train", "vgg_separable", "--devices", "2", "--batch-size", "15"]],
        ),
        devices=2, log=logs["devices"],
    )  # fmt: skip
    folder, mark = root / "two-processes", root / "mark"
    coordinator = f"127.0.0.1:{_free_port()}"

    def spec(mode, index, name):
        distribution = dict(coordinator=coordinator, num_processes=2, process_id=index, timeout=TIMEOUT)
        return dict(mode=mode, out=str(root / f"{name}.json"), folder=str(folder), distribution=distribution)

    first = [
        _launch(spec("train", 0, "p0"), log=logs["p0"]),
        _launch(spec("train", 1, "p1"), log=logs["p1"], SEPCONV_TEST_MARK=str(mark)),
    ]
    deadline = time.monotonic() + 300
    while not mark.exists():  # process 1 is in epoch 2, batch 2
        assert time.monotonic() < deadline and first[1].poll() is None, open(logs["p1"].name).read()[-3000:]
        time.sleep(0.2)
    first[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    try:  # process 0 must notice and stop, not hang
        stopped = first[0].wait(timeout=120), time.monotonic() - killed
    except subprocess.TimeoutExpired:
        first[0].kill()
        stopped = None, None
    first[1].wait()
    state = _read(folder / "vgg_separable" / "state.json")
    coordinator = f"127.0.0.1:{_free_port()}"
    second = [_launch(spec("resume", i, f"r{i}"), log=logs[f"r{i}"]) for i in range(2)]
    for process, name in zip(second, ("r0", "r1")):
        _finish(process, logs[name])
    _finish(devices, logs["devices"])
    return {
        "devices": _read(root / "devices.json"),
        "processes": [_read(root / "r0.json"), _read(root / "r1.json")],
        "stopped": stopped,
        "state_when_killed": state,
        "folder": folder,
    }


def _curve(history):
    return np.array([[row[c] for c in COLUMNS] for row in history["vgg_separable"]])


def _batches(seen):
    """(epoch, batch index) -> image indices, the last fetch of each (Keras peeks at batch 0)."""
    return {(epoch, index): ids for epoch, index, ids in seen}


@pytest.mark.slow
def test_layers_on_batch_sharded_inputs_and_layout_map(runs):
    layers = runs["devices"]["layers"]
    assert layers["devices"] == 2
    for name in ("native", "shifted"):  # the JAX depthwise paths behind sepconv.kernels
        assert layers[name]["output_shards"] == 2
        assert layers[name]["output_error"] < 1e-6 and layers[name]["gradient_error"] < 1e-5, layers[name]
    assert layers["layout"] == {
        "dsc/depthwise_kernel": "P(None, None, 'model', None)",
        "dsc/pointwise_kernel": "P(None, None, None, 'model')",
        "dsc/bias": "P(None,)",
    }
    assert layers["layout_output_error"] < 1e-6


@pytest.mark.slow
def test_two_devices_train_as_one(runs):
    """With the weight average: validated and tested on both devices' shares as on one device."""
    result = runs["devices"]
    reference = result["reference_with_config"]
    assert len(reference["history"]["vgg_separable"]) == 2
    np.testing.assert_allclose(_curve(result["history"]), _curve(reference["history"]), rtol=RTOL)
    # One process feeds both devices: the same global batches as the one-device run.
    assert _batches(result["seen"]) == _batches(reference["seen"])
    summary = result["models"]["vgg_separable"]
    assert (summary["devices"], summary["processes"]) == (2, 1)
    expected = reference["models"]["vgg_separable"]
    for key in ("test_accuracy", "test_accuracy_tta"):  # evaluated over both devices' shares
        assert summary[key] == pytest.approx(expected[key], abs=1e-6), key
    assert summary["median_images_per_s_per_device"] == pytest.approx(summary["median_images_per_s"] / 2)
    assert result["cli_errors"] == [
        [2, "sepconv train: error: batch_size (the global batch) must be divisible by the number of devices, 2 "
            "(1 process(es) x 2 device(s)). Received: batch_size=15"],
    ]  # fmt: skip


@pytest.mark.slow
def test_two_processes_killed_then_resumed_train_as_one(runs):
    code, seconds = runs["stopped"]
    assert code not in (0, None), "process 0 kept waiting for the killed process"
    assert seconds < TIMEOUT + 45
    assert runs["state_when_killed"]["epochs_done"] == 1  # killed in epoch 2
    reference = runs["devices"]["reference"]
    for result in runs["processes"]:
        assert [row["epoch"] for row in result["history"]["vgg_separable"]] == [1, 2]
        np.testing.assert_allclose(_curve(result["history"]), _curve(reference["history"]), rtol=RTOL)
        for key in ("test_accuracy", "test_accuracy_tta"):  # each process counts both shares
            expected = reference["models"]["vgg_separable"][key]
            assert result["models"]["vgg_separable"][key] == pytest.approx(expected, abs=1e-6), key
    # Disjoint halves of the one-device run's batches, for the resumed epoch 2 (0-based 1;
    # `fit` peeks at a batch of epoch 0 before the first epoch starts).
    first, second = ({k: v for k, v in _batches(r["seen"]).items() if k[0] >= 1} for r in runs["processes"])
    expected = {key: ids for key, ids in _batches(reference["seen"]).items() if key[0] >= 1}
    assert first.keys() == second.keys() == expected.keys()
    for key, ids in expected.items():
        assert not set(first[key]) & set(second[key])
        assert first[key] + second[key] == ids


@pytest.mark.slow
def test_only_process_zero_writes(runs):
    writes = [result["writes"] for result in runs["processes"]]
    assert writes[1] == []
    assert any(path.endswith("state.json") for _, path in writes[0])
    folder = runs["folder"]
    assert sorted(os.listdir(folder)) == ["config.json", "history.csv", "results.json", "vgg_separable"]
    record = json.loads((folder / "config.json").read_text())
    assert record["distribution"]["processes"] == 2 and record["distribution"]["per_device_batch_size"] == 8
    assert [r["distribution"]["processes"] for r in record["resumed"]] == [2]
    history = (folder / "history.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in history[1:]] == ["1", "2"]
