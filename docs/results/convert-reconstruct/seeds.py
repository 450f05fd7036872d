"""One conversion setting distilled under several seeds: how much one epoch's outcome varies.

    KERAS_BACKEND=tensorflow python seeds.py IN.keras --rank 1 --out DIR --seeds 0 1 2 3 [setting flags]

Converts IN at `--rank` with reconstruction once (`--iterations`, `--relu-rounds`;
deterministic: the 1,024 calibration images are drawn with seed 0), then, per seed, restores the
reconstructed weights and distills one epoch over all 50,000 training images
exactly as `sepconv convert ... --finetune-epochs 1 --seed S` does
(`finetune_on_cifar10`), scoring the 10,000 test images. Only the order and
augmentation differ between the runs, so their spread is the noise of one
reading of a setting already chosen; nothing is chosen on them. The setting
flags default to the rank-1 choice (cosine from 2e-3, warmup 0.1, T = 8,
labels 0.6, `--reparameterize`). Writes DIR/seeds-rank-R.json with every run,
their mean and standard deviation (-iI-rR added for other reconstruction rounds, -clipC
with `--clip-norm C`).
"""

import argparse
import json
import os
import statistics
import time

import keras
from measure import accuracy, rounds_suffix

from sepconv import _provenance
from sepconv._atomic import write_text
from sepconv.convert import cifar10_calibration, convert, finetune_on_cifar10
from sepconv.convert._finetune import SCHEDULES, cifar10_image_format
from sepconv.data import Batches, load_cifar10


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--temperature", type=float, default=8.0)
    parser.add_argument("--label-weight", type=float, default=0.6)
    parser.add_argument("--no-reparameterize", dest="reparameterize", action="store_false")
    parser.add_argument("--clip-norm", type=float, default=None)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--relu-rounds", type=int, default=2)
    args = parser.parse_args()
    source = os.environ["SEPCONV_DATA"]
    model = keras.saving.load_model(args.input)
    data = load_cifar10(source)
    test = Batches(data.x_test, data.y_test, batch_size=256, shuffle=False, data_format=cifar10_image_format(model))
    start = time.perf_counter()
    calibration = cifar10_calibration(source, 1024, model)
    student, _ = convert(model, rank=args.rank, calibration=calibration, reconstruct=True, iterations=args.iterations,
                         relu_rounds=args.relu_rounds)  # fmt: skip
    record = {"input": args.input, "rank": args.rank, "config": vars(args), "environment": _provenance.environment(),
              "reconstruction_seconds": time.perf_counter() - start,
              "reconstructed_accuracy": accuracy(student, test), "runs": []}  # fmt: skip
    reconstructed = student.get_weights()
    for seed in args.seeds:
        student.set_weights(reconstructed)
        tuned = finetune_on_cifar10(
            student, model, source, learning_rate=args.learning_rate, schedule=args.schedule, warmup=args.warmup,
            temperature=args.temperature, label_weight=args.label_weight, reparameterize=args.reparameterize,
            seed=seed, clip_norm=args.clip_norm, verbose=0,
        )  # fmt: skip
        run = {"seed": seed, "accuracy": tuned["accuracy"]["finetuned"], "seconds": tuned["seconds"],
               "params": student.count_params()}  # fmt: skip
        record["runs"].append(run)
        print(json.dumps(run), flush=True)
    scores = [run["accuracy"] for run in record["runs"]]
    record["mean"] = statistics.fmean(scores)
    record["stdev"] = statistics.stdev(scores) if len(scores) > 1 else 0.0
    print(f"mean {record['mean']:.4f}  stdev {record['stdev']:.4f}  over {len(scores)} seeds", flush=True)
    os.makedirs(args.out, exist_ok=True)
    name = f"seeds-rank-{args.rank}"
    name += rounds_suffix(args.iterations, args.relu_rounds)
    name += f"-clip{args.clip_norm:g}" if args.clip_norm else ""
    write_text(os.path.join(args.out, name + ".json"), json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
