"""Seconds a new time-budget plan adds: 20 training steps right after `TimeBudget` rebuilds the
train step with a new schedule length, against 20 steps without, four times each (median).

    python docs/results/budget-replay/rebuild_cost.py dsc_resnet9_half
"""

import argparse
import statistics
import time

import numpy as np

from sepconv.training._callbacks import _set_schedule_length
from sepconv.training._config import make_config
from sepconv.training._loop import build_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--dtype-policy", default="mixed_bfloat16")
    args = parser.parse_args()
    model = build_model(args.model, make_config("fast", dtype_policy=args.dtype_policy), (32, 32, 3), 10, 391)
    images = np.random.default_rng(0).normal(size=(128, 32, 32, 3)).astype("float32")
    labels = np.zeros((128,), "int32")

    def steps(n=20):
        start = time.perf_counter()
        for _ in range(n):
            model.train_on_batch(images, labels)
        return time.perf_counter() - start

    steps(5)  # traces the first step
    plain, rebuilt = [], []
    for epochs in (50, 51, 52, 53):
        plain.append(steps())
        _set_schedule_length(model, 391 * epochs)
        rebuilt.append(steps())
    extra = statistics.median(rebuilt) - statistics.median(plain)
    print(f"{args.model}: 20 steps {statistics.median(plain):.2f} s, after a rebuild {statistics.median(rebuilt):.2f} s "
          f"(+{extra:.2f} s per new plan)")


if __name__ == "__main__":
    main()
