"""One process of the distributed tests (`test_distribution.py`), run as a subprocess.

The test sets `KERAS_BACKEND=jax` and `XLA_FLAGS=--xla_force_host_platform_device_count=N`
in the environment before JAX starts. Argument: a JSON object with

    mode       "train" (a run, optionally after a one-device reference run in the same
               process), "resume" or "layers"
    out        where to write this process's JSON result
    folder     the run folder ("train", "resume")
    reference  folder of a one-device run to train first ("train", optional)
    distribution  DistributionConfig fields

Training images carry their index in pixel (0, 0), channels 0 and 1, so the result can
list which images each process was fed, per epoch and batch (`seen`). With
`SEPCONV_TEST_MARK=PATH`, the process writes PATH when it fetches batch 2 of the second
epoch and then stalls, so the test can kill it in the middle of that epoch.
"""

import json
import os
import sys
import time

import numpy as np

CLASSES = ("red", "green", "blue")
TINY = {"blocks": ((4, 1),)}
EPOCHS = 2  # the test kills a process in epoch 2 and resumes it


def synthetic(train_per_class=40, test_per_class=8, size=8):
    """Noise images whose class raises one colour channel; pixel (0, 0) holds the index."""
    from sepconv.data import Cifar10

    rng = np.random.default_rng(0)

    def split(per_class):
        y = np.tile(np.arange(len(CLASSES)), per_class).astype(np.int64)
        x = rng.integers(0, 150, size=(len(y), size, size, 3))
        x[np.arange(len(y)), :, :, y] += 100
        x[:, 0, 0, 0], x[:, 0, 0, 1] = np.arange(len(y)) % 256, np.arange(len(y)) // 256
        return x.astype(np.uint8), y

    return Cifar10(*split(train_per_class), *split(test_per_class), CLASSES, "synthetic test data")


def config(**overrides):
    from sepconv.training import make_config

    values = dict(epochs=EPOCHS, batch_size=16, validation=0.2, model_kwargs=TINY, cutout=2, tta=True)
    return make_config("tutorial", **{**values, **overrides})


def record_batches(seen):
    """Wraps `Batches.__getitem__` (inherited by `ShardedBatches`) to list the training images fed."""
    from sepconv.data import Batches

    original = Batches.__getitem__
    mark = os.environ.get("SEPCONV_TEST_MARK")

    def getitem(self, index):
        x, y = original(self, index)
        if self.shuffle:
            pixels = np.rint((x[:, 0, 0, :2] - self._shift[:2]) / self._scale[:2]).astype(int)
            seen.append([self.epoch, index, (pixels[:, 0] + 256 * pixels[:, 1]).tolist()])
            if mark and self.epoch == 1 and index == 2:
                with open(mark, "w") as f:
                    f.write("mid-epoch\n")
                time.sleep(600)
        return x, y

    Batches.__getitem__ = getitem


def record_writes(folder, writes):
    """Lists the files and folders this process creates, replaces or removes under `folder`."""
    folder = os.path.abspath(folder)

    def wrap(function):
        replace = function is os.replace

        def recorded(path, *args, **kwargs):
            target = os.path.abspath(args[0] if replace else path)
            if target.startswith(folder):
                writes.append([function.__name__, target])
            return function(path, *args, **kwargs)

        return recorded

    os.replace, os.remove, os.makedirs = wrap(os.replace), wrap(os.remove), wrap(os.makedirs)


def cli_error(argv):
    """Exit code and stderr of `sepconv ARGV`, run in this process."""
    import contextlib
    import io

    from sepconv.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(argv)
    return [code, stderr.getvalue().strip()]


def train(spec):
    from sepconv.training import DistributionConfig, compare, resume

    seen, writes, result = [], [], {}
    record_batches(seen)
    data = synthetic()
    if spec.get("layers"):
        result["layers"] = layers(spec)
    # One-device runs: "reference" with the default config (the processes' runs are held to it),
    # "reference_with_config" with this launch's overrides (its own run is held to that one).
    references = {"reference": {}, "reference_with_config": spec.get("config")}
    for key, overrides in references.items() if spec.get("reference") else ():
        if overrides is None:
            continue
        run = compare(["vgg_separable"], config(**overrides), out=f"{spec['reference']}-{key}", quiet=True,
                      data=data, report=False)  # fmt: skip
        result[key] = {"history": run.history, "models": run.models, "seen": list(seen)}
        seen.clear()
    if spec.get("cli_errors"):
        result["cli_errors"] = [cli_error(argv) for argv in spec["cli_errors"]]
    record_writes(spec["folder"], writes)
    distribution = DistributionConfig.from_environment(**spec.get("distribution", {}))
    if spec["mode"] == "resume":
        run = resume(spec["folder"], quiet=True, data=data, report=False, distribution=distribution)
    else:
        run = compare(
            ["vgg_separable"], config(**spec.get("config", {})), out=spec["folder"], quiet=True, data=data,
            report=False, distribution=distribution,
        )  # fmt: skip
    result.update(history=run.history, models=run.models, seen=seen, writes=writes)
    return result


def layers(spec):
    """The sepconv layer on batch-sharded inputs, and with kernels placed by a `LayoutMap`."""
    import jax
    import keras

    import sepconv

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8, 8, 4)).astype("float32")
    result = {"devices": jax.device_count()}
    for name in ("native", "shifted"):
        sepconv.kernels.set_depthwise_implementation(name)
        keras.utils.set_random_seed(0)
        layer = sepconv.DepthwiseSeparableConv2D(6, 3, padding="same")
        layer.build(x.shape)
        weights = [v.value for v in layer.trainable_variables]

        def loss(weights, x, layer=layer):
            y, _ = layer.stateless_call(weights, [], x)
            return (y**2).sum(), y

        step = jax.jit(jax.value_and_grad(loss, has_aux=True))
        (_, y1), g1 = step(weights, x)  # one device
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
        sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch")))
        (_, y2), g2 = step(weights, sharded)
        result[name] = {
            "output_shards": len(y2.sharding.device_set),
            "output_error": _relative(y1, y2),
            "gradient_error": max(_relative(a, b) for a, b in zip(g1, g2)),
        }
    sepconv.kernels.set_depthwise_implementation("auto")

    # Model parallel: kernels addressed by their stable names.
    mesh = keras.distribution.DeviceMesh((1, jax.device_count()), ["batch", "model"])
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*depthwise_kernel"] = (None, None, "model", None)  # split input channels
    layout_map[".*pointwise_kernel"] = (None, None, None, "model")  # split output filters
    distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")

    def build():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 4))
        outputs = sepconv.DepthwiseSeparableConv2D(6, 3, padding="same", name="dsc")(inputs)
        return keras.Model(inputs, outputs)

    plain = build()
    with distribution.scope():
        placed = build()
    result["layout"] = {v.path: str(v.value.sharding.spec) for v in placed.weights}
    result["layout_output_error"] = _relative(plain(x), placed(x))
    return result


def _relative(reference, value):
    """Largest absolute difference relative to the largest reference magnitude."""
    reference, value = np.asarray(reference), np.asarray(value)
    return float(np.max(np.abs(reference - value)) / np.max(np.abs(reference)))


def main():
    spec = json.loads(sys.argv[1])
    result = layers(spec) if spec["mode"] == "layers" else train(spec)
    with open(spec["out"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
