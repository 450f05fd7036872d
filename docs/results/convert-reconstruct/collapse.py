"""The global gradient norm of every update of one distillation epoch: what made a seed collapse.

    KERAS_BACKEND=tensorflow python collapse.py IN.keras --out DIR --seeds 3 0 [--iterations 8 --relu-rounds 4]
        [--learning-rate 1e-3] [--clip-norm C] [--start-images 128] [--start-seed S] [--no-reparameterize]

Converts IN at rank 1 with reconstruction (cached in DIR as an .npz, never committed), then
per seed trains exactly the epoch `sepconv convert ... --finetune-epochs 1 --seed S` trains
(all 50,000 training images, cosine, warmup 0.1, T = 8, labels 0.6, `--reparameterize`), without
any validation: the test set is not read. Records the epoch's loss and training accuracy and the
norm of each update's gradients before clipping. `--start-images N` starts the BatchNorms on the
first N training images (128: one batch, as before they started on the median batch of 1,024);
`--start-seed S` on those of seed S's order instead of the run's own. Writes
DIR/collapse-sSEED[-options].json.
"""

import argparse
import json
import os
import time

import keras
import numpy as np

from sepconv import _provenance
from sepconv._atomic import write_text
from sepconv.convert import _finetune, cifar10_calibration, convert, finetune
from sepconv.convert._finetune import STATISTICS_IMAGES, cifar10_image_format
from sepconv.data import Batches, load_cifar10, make_splits

_STEPS = 512  # more than the epoch's 391 updates


class NormRecordingAdam(keras.optimizers.Adam):
    """Adam that writes each update's global gradient norm, before any clipping, into `norms`."""

    def build(self, variables):
        super().build(variables)
        self.norms = self.add_variable(shape=(_STEPS,), initializer="zeros", name="norms")

    def _clip_gradients(self, grads):
        norm = keras.ops.sqrt(sum(keras.ops.sum(keras.ops.square(g)) for g in grads if g is not None))
        step = keras.ops.reshape(keras.ops.minimum(keras.ops.cast(self.iterations, "int32"), _STEPS - 1), (1, 1))
        self.norms.assign(keras.ops.scatter_update(self.norms, step, keras.ops.reshape(norm, (1,))))
        return super()._clip_gradients(grads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[3, 0])
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--relu-rounds", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--clip-norm", type=float, default=None)
    parser.add_argument("--start-images", type=int, default=STATISTICS_IMAGES)
    parser.add_argument("--start-seed", type=int, default=None)
    parser.add_argument("--no-reparameterize", dest="reparameterize", action="store_false")
    args = parser.parse_args()
    source = os.environ["SEPCONV_DATA"]
    os.makedirs(args.out, exist_ok=True)
    model = keras.saving.load_model(args.input)
    data_format = cifar10_image_format(model)
    data = load_cifar10(source)
    cache = os.path.join(args.out, f"reconstructed-rank-1-i{args.iterations}-r{args.relu_rounds}.npz")
    if os.path.exists(cache):
        student, _ = convert(model, rank=1, calibration=None)
        student.set_weights(list(np.load(cache).values()))
    else:
        calibration = cifar10_calibration(source, 1024, model)
        student, _ = convert(model, rank=1, calibration=calibration, reconstruct=True, iterations=args.iterations,
                             relu_rounds=args.relu_rounds)  # fmt: skip
        np.savez(cache, *student.get_weights())
    reconstructed = student.get_weights()

    def training_batches(seed):
        splits = make_splits(data, validation="test", seed=seed)  # what finetune_on_cifar10 trains on
        return Batches(splits.x_train, splits.y_train, batch_size=128, augment=True, seed=seed,
                       data_format=data_format)  # fmt: skip

    optimizers, first_images = [], _finetune._first_images

    def recording_optimizer(*options):
        optimizer = _finetune._optimizer_without_recording(*options)
        optimizers.append(NormRecordingAdam(optimizer._learning_rate, global_clipnorm=optimizer.global_clipnorm))
        return optimizers[-1]

    _finetune._optimizer_without_recording, _finetune._optimizer = _finetune._optimizer, recording_optimizer
    start_from = training_batches(args.start_seed) if args.start_seed is not None else None
    _finetune._first_images = lambda train: first_images(start_from or train, args.start_images)
    for seed in args.seeds:
        student.set_weights(reconstructed)
        train = training_batches(seed)
        start = time.perf_counter()
        history = finetune(student, train, learning_rate=args.learning_rate, schedule="cosine", warmup=0.1,
                           temperature=8.0, label_weight=0.6, reparameterize=args.reparameterize, teacher=model,
                           clip_norm=args.clip_norm, verbose=0)  # fmt: skip
        norms = keras.ops.convert_to_numpy(optimizers[-1].norms)[: len(train)]
        record = {"seed": seed, "config": vars(args), "environment": _provenance.environment(),
                  "seconds": time.perf_counter() - start,
                  "loss": float(history["loss"][0]), "training_accuracy": float(history["accuracy"][0]),
                  "norm_quantiles": {f"{q:g}": float(np.quantile(norms, q)) for q in (0.1, 0.5, 0.9, 0.99, 1)},
                  "largest_norm_at_update": int(norms.argmax()), "norms": [float(n) for n in norms]}  # fmt: skip
        print(json.dumps({key: value for key, value in record.items() if key not in ("norms", "environment")}),
              flush=True)  # fmt: skip
        name = f"collapse-s{seed}"
        name += f"-clip{args.clip_norm:g}" if args.clip_norm else ""
        name += f"-start{args.start_images}" if args.start_images != STATISTICS_IMAGES else ""
        name += f"-from-s{args.start_seed}" if args.start_seed is not None else ""
        name += "" if args.reparameterize else "-plain"
        write_text(os.path.join(args.out, name + ".json"), json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
