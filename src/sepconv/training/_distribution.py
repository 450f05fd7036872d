"""Training on several devices and machines with `keras.distribution` (JAX backend only).

sepconv does not distribute anything itself: it sets a `keras.distribution.DataParallel`
over the chosen devices, and for several processes starts JAX's distributed runtime as
`keras.distribution.initialize` does (`jax.distributed.initialize`), adding a timeout.
What sepconv adds is what `fit` leaves to the caller:

* each process reads only its share of every global batch (`ShardedBatches`);
* only process 0 writes the run folder, checkpoints and reports (`Placement.writer`),
  and every process resumes from the checkpoint process 0 wrote;
* bad settings fail at once, in one line, before any device work.

Batch size and learning rate: `TrainConfig.batch_size` is the *global* batch, split
evenly over all devices of all processes (`batch_size / devices` images per device per
step). Gradients are averaged over the global batch (the loss is its mean), and
BatchNormalization's statistics are taken over the global batch too (XLA inserts the
cross-device sums), so a run computes what a one-device run with the same batch size
computes, up to the order of floating-point sums. The learning rate is therefore used
as given, never rescaled: who raises the global batch with the device count should raise
the rate by hand (the linear scaling rule with warmup, Goyal et al. 2017,
arXiv:1706.02677, is a common start).

In Keras 3.15 `keras.distribution` works on JAX only (TensorFlow's is a prototype,
PyTorch's is not in a release); the other backends get a one-line error.
"""

import contextlib
import dataclasses
import datetime
import math
import os
import socket
import sys
import time

from sepconv import _options, _validation
from sepconv._options import in_range, option

ENV_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"


def _check_devices(value, name):
    if value is None or value == "all":
        return value
    if isinstance(value, str):
        raise ValueError(f"{name} must be 'all' or a positive integer. Received: {name}={value!r}")
    return _validation.positive_int(value, name)


def _parse_devices(text, name):
    return text if text == "all" else _options.parse_int(text, name)


def _check_address(value, name):
    if value is None:
        return None
    value = _validation.string(value, name)
    first = value.split(",")[0]  # Keras takes a list of all job addresses; JAX needs the first
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name} must be HOST:PORT, e.g. 10.0.0.1:1234. Received: {name}={value!r}")
    return value


_int, _float = _options.parse_int, _options.parse_float


@dataclasses.dataclass(frozen=True)
class DistributionConfig:
    """Where a run trains: devices and processes. Not part of what it computes.

    The default (every field None) trains on one device, without `keras.distribution`.
    `coordinator`, `num_processes` and `process_id` default to the environment variables
    `keras.distribution.initialize` reads (`from_environment`). Each field has a flag of
    `sepconv train` / `sepconv compare` (`--devices`, `--coordinator`, ...).
    """

    devices: int | str | None = option(None, "train data-parallel on 'all' local devices, or the first N, of each "
                                       "process (JAX only; default: one device, no distribution)",
                                       check=_check_devices, parse=_parse_devices, metavar="all|N")  # fmt: skip
    coordinator: str | None = option(None, f"HOST:PORT of process 0 for multi-process training (default: ${ENV_ADDRESSES})",
                                     check=_check_address, metavar="HOST:PORT")  # fmt: skip
    num_processes: int | None = option(None, f"processes of a multi-process run (default: ${ENV_PROCESSES}, else 1)",
                                       check=_validation.optional(_validation.positive_int), parse=_int,
                                       metavar="N")  # fmt: skip
    process_id: int | None = option(None, f"this process, 0 to N-1; process 0 writes the run folder "
                                    f"(default: ${ENV_PROCESS_ID})",
                                    check=_validation.optional(_validation.non_negative_int), parse=_int,
                                    metavar="I")  # fmt: skip
    timeout: float = option(300.0, "seconds to wait for the coordinator and the other processes to start, and "
                            "for a silent process before the others stop",
                            check=in_range(low=0.0, low_open=True), parse=_float, metavar="S")  # fmt: skip

    def __post_init__(self):
        _options.validate(self)
        if self.multi_process:
            if self.coordinator is None:
                raise ValueError(
                    f"coordinator (HOST:PORT of process 0) is needed with num_processes={self.num_processes}. "
                    f"Received: coordinator=None"
                )
            if self.process_id is None:
                raise ValueError(
                    f"process_id is needed with num_processes={self.num_processes}. Received: process_id=None"
                )
            if self.process_id >= self.num_processes:
                raise ValueError(
                    f"process_id must be less than num_processes={self.num_processes}. "
                    f"Received: process_id={self.process_id}"
                )

    @classmethod
    def from_environment(cls, environ=None, **given):
        """A config from `given` fields, the others from Keras' environment variables."""
        environ = os.environ if environ is None else environ
        for field, variable, parse in (
            ("coordinator", ENV_ADDRESSES, _options.parse_str),
            ("num_processes", ENV_PROCESSES, _int),
            ("process_id", ENV_PROCESS_ID, _int),
        ):
            if given.get(field) is None and environ.get(variable):
                given[field] = parse(environ[variable], variable)
        return cls(**given)

    @property
    def multi_process(self):
        return (self.num_processes or 1) > 1

    @property
    def enabled(self):
        return self.devices is not None or self.multi_process

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Placement:
    """The devices and processes a run trains on, once started (`start`).

    Attributes:
        processes: number of processes.
        process_index: this process (0 writes the run folder).
        local_devices: devices each process trains on.
        device_names: all devices of the data-parallel mesh, in order.
        started: process 0's start time (POSIX seconds), the same in every process; None
            in one process.
        distribution: the `keras.distribution.DataParallel` set, or None on one device.
    """

    processes: int = 1
    process_index: int = 0
    local_devices: int = 1
    device_names: tuple = ()
    started: float | None = None
    distribution: object = None

    @property
    def devices(self):
        return self.processes * self.local_devices

    @property
    def writer(self):
        """Whether this process writes files (process 0)."""
        return self.process_index == 0

    def start_time(self):
        """When the run started, the same in every process (default run-folder names agree)."""
        return datetime.datetime.now() if self.started is None else datetime.datetime.fromtimestamp(self.started)

    def to_dict(self, batch_size=None):
        """The record stored in config.json (`distribution`)."""
        record = {
            "devices": self.devices,
            "processes": self.processes,
            "devices_per_process": self.local_devices,
            "device_names": list(self.device_names),
            "keras_distribution": type(self.distribution).__name__ if self.distribution else None,
        }
        if batch_size is not None:
            record["per_device_batch_size"] = batch_size // self.devices
        return record

    def batches(self, x, y, **kwargs):
        """A `Batches` of `x, y`; under a distribution, this process's share of each global batch."""
        from sepconv.data import Batches, ShardedBatches

        if self.distribution is None:
            return Batches(x, y, **kwargs)
        return ShardedBatches(x, y, shard=self.process_index, shards=self.processes, multiple=self.devices, **kwargs)

    def barrier(self, name):
        """Waits until every process gets here (nothing to wait for in one process)."""
        if self.processes > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def load_model(self, path, seed):
        """`keras.saving.load_model(path)`; under a distribution, after seeding every process alike.

        Loading creates each variable from its initializer before assigning the saved
        value, and creating a variable under a multi-process distribution checks that every
        process holds the same value: they must draw the same initial values.
        """
        import keras

        if self.distribution is not None:
            keras.utils.set_random_seed(seed)
        return keras.saving.load_model(path)

    @contextlib.contextmanager
    def saving(self):
        """Saving a model without the distribution set.

        Keras' `.keras` saving builds a throwaway optimizer whose variables, created under
        a multi-process distribution, would be a step every process must take (it checks
        that all processes hold the same value), taken by process 0 alone: it fails.
        Replicated weights are read from the local copy.
        """
        import keras

        if self.distribution is None:
            yield
            return
        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(self.distribution)


SINGLE = Placement()
_started = {}


def start(config=None, batch_size=None):
    """Sets up the devices and processes of `config` (a `DistributionConfig` or None).

    Checks the backend, the device count and that `batch_size` (the global batch) splits
    evenly over all devices; starts the multi-process runtime once per process (later
    calls with the same config return the same `Placement`). Returns a `Placement`.
    """
    if config is not None and not isinstance(config, DistributionConfig):
        raise TypeError(f"distribution must be a DistributionConfig or None. Received: distribution={config!r}")
    enabled = config is not None and config.enabled
    if _started and config not in _started:  # a distribution, once set, stays for the process
        raise ValueError(
            f"one process trains with one distribution ({next(iter(_started))}); start a new process for "
            f"another. Received: distribution={config}"
        )
    if not enabled:
        return SINGLE
    placement = _started.get(config)
    if placement is None:
        placement = _started[config] = _start(config, batch_size)
    _check_batch(batch_size, placement.processes, placement.local_devices)
    return placement


def _check_batch(batch_size, processes, local_devices):
    if batch_size is not None and batch_size % (processes * local_devices):
        raise ValueError(
            f"batch_size (the global batch) must be divisible by the number of devices, {processes * local_devices} "
            f"({processes} process(es) x {local_devices} device(s)). Received: batch_size={batch_size}"
        )


def _start(config, batch_size):
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            "training on several devices or processes needs the JAX backend (keras.distribution works on JAX "
            f"only in Keras 3.15); set KERAS_BACKEND=jax. Received: KERAS_BACKEND={backend}"
        )
    if config.multi_process:
        _initialize(config)
    import jax

    local = sorted(jax.local_devices(), key=lambda d: d.id)
    count = len(local) if config.devices in (None, "all") else config.devices
    if count > len(local):
        kind = local[0].platform.upper()
        raise ValueError(
            f"devices must be at most the {len(local)} {kind} device(s) this process sees "
            f"(on a CPU, more come from XLA_FLAGS=--xla_force_host_platform_device_count=N). "
            f"Received: devices={config.devices}"
        )
    processes, index = jax.process_count(), jax.process_index()
    _check_batch(batch_size, processes, count)  # before anything is set
    chosen = []
    for process in range(processes):  # the first `count` devices of every process
        own = sorted((d for d in jax.devices() if d.process_index == process), key=lambda d: d.id)
        chosen += own[:count]
    names = tuple(f"{d.platform}:{d.id}" for d in chosen)
    distribution = keras.distribution.DataParallel(devices=list(names), auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    started = None
    if processes > 1:  # one start time for all, so default run-folder names agree
        import numpy as np
        from jax.experimental import multihost_utils

        # Whole seconds in two int32 halves: without jax_enable_x64, 64-bit values become 32-bit.
        high, low = multihost_utils.broadcast_one_to_all(np.array(divmod(int(time.time()), 1 << 16), np.int32))
        started = float(int(high) * (1 << 16) + int(low))
    return Placement(processes, index, count, names, started, distribution)


def _initialize(config):
    """`jax.distributed.initialize`, as `keras.distribution.initialize` calls it, with a timeout.

    JAX ends the whole process (a C++ check failure) when the coordinator does not answer
    in time; a process other than 0 first waits for the coordinator's port itself so that
    an unreachable coordinator is a one-line `ValueError` instead.
    """
    import jax

    if jax.distributed.is_initialized():
        return
    address = config.coordinator.split(",")[0]
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + config.timeout
    if config.process_id == 0:
        _check_port_free(int(port), address)
    else:
        _wait_for_port(host.strip("[]"), int(port), deadline, address, config.timeout)
    seconds = max(1, math.ceil(deadline - time.monotonic()))
    # JAX itself ends a process whose peers do not all arrive in time, with its own message.
    print(
        f"process {config.process_id} of {config.num_processes}: joining the coordinator at {address} "
        f"(waiting at most {seconds} s for all processes)",
        file=sys.stderr,
        flush=True,
    )
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=config.num_processes,
        process_id=config.process_id,
        initialization_timeout=seconds,
        heartbeat_timeout_seconds=max(1, math.ceil(config.timeout)),
    )


def _check_port_free(port, address):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError as error:
            raise ValueError(
                f"process 0 runs the coordinator, but port {port} is taken on this machine ({error.strerror}); "
                f"choose another port. Received: coordinator={address}"
            ) from None


def _wait_for_port(host, port, deadline, address, timeout):
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise ValueError(
                    f"the coordinator did not answer within {timeout:g} s (timeout); start process 0 there, or "
                    f"check the address and the firewall. Received: coordinator={address}"
                ) from None
            time.sleep(0.2)


def scaling(summary, placement):
    """Devices, processes and images per second per device of a model's summary (results.json).

    `median_images_per_s` counts the images of all processes; divided by the devices it
    is the figure that stays flat when a run scales perfectly.
    """
    return {
        "devices": placement.devices,
        "processes": placement.processes,
        "median_images_per_s_per_device": summary["median_images_per_s"] / placement.devices,
    }
