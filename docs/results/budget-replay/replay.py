"""Replays the wall-clock runs under docs/results through `TimeBudget`'s re-planning rule.

Each run's recorded epoch times (`history.csv`: `epoch_time_s`, plus an even share of the
validation and checkpoint time that `state.json`'s `budget_elapsed_s` adds to them) are fed to
the callback as its clock, once with the median of the last three epochs and no band (the rule
those runs trained under) and once with the callback's own `window` and `tolerance`. Printed
per run: the plan changes (each one rebuilds the train step), the epochs, and the minutes the
recorded times add up to. Epochs a rule plans beyond those recorded are given the run's median
epoch time and counted in `extrapolated`.

    python docs/results/budget-replay/replay.py --output docs/results/budget-replay/replay.json
"""

import argparse
import csv
import glob
import itertools
import json
import os
import statistics

import keras

from sepconv._atomic import write_text
from sepconv._schedules import warmup_cosine
from sepconv.training._callbacks import TimeBudget

HERE = os.path.dirname(os.path.abspath(__file__))


def recorded_run(folder):
    """`(minutes, probe epoch_s, steps per epoch, probe plan, [wall s per epoch])` of one budgeted run."""
    with open(os.path.join(folder, "config.json")) as f:
        minutes = json.load(f)["config"]["time_budget"]
    with open(os.path.join(folder, "state.json")) as f:
        state = json.load(f)
    with open(os.path.join(folder, "history.csv")) as f:
        times = [float(row["epoch_time_s"]) for row in csv.DictReader(f)]
    overhead = (state["budget_elapsed_s"] - sum(times)) / len(times)
    epoch_s = state["budget_step_s"] * state["steps_per_epoch"]
    return minutes, epoch_s, state["steps_per_epoch"], state["epochs"], [t + overhead for t in times]


def replay(minutes, epoch_s, steps, plan, times, window, tolerance):
    """Drives a `TimeBudget` epoch by epoch on the recorded times; returns its plans, epochs and seconds."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(warmup_cosine(0.1, plan * steps, warmup_steps=1)), loss="mse")
    extra = [statistics.median(times)] * plan
    ticks = itertools.accumulate(times + extra, initial=0.0)
    plans, state = [], {}
    budget = TimeBudget(minutes, state, steps, epoch_s, on_plan=plans.append, clock=ticks.__next__)
    budget.window, budget.tolerance = window, tolerance
    budget.set_model(model)
    budget.set_params({"epochs": plan})
    budget.on_train_begin()
    epoch = 0
    while not model.stop_training:
        budget.on_epoch_end(epoch)
        epoch += 1
    return {
        "plan_changes": len(plans) - 1,
        "plans": plans,
        "epochs": epoch,
        "extrapolated": max(epoch - len(times), 0),
        "minutes": round(state["budget_elapsed_s"] / 60, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", help="also write the results here as JSON")
    args = parser.parse_args()
    rules = {"median of 3, no band": (3, 0.0), "this version": (TimeBudget.window, TimeBudget.tolerance)}
    results = {"rules": {name: {"window": w, "tolerance": t} for name, (w, t) in rules.items()}, "runs": {}}
    for folder in sorted(glob.glob(os.path.join(HERE, "..", "wall*"))):
        minutes, epoch_s, steps, plan, times = recorded_run(folder)
        name = os.path.basename(folder)
        results["runs"][name] = {rule: replay(minutes, epoch_s, steps, plan, times, *wt) for rule, wt in rules.items()}
        row = "  ".join(
            f"{rule}: {r['plan_changes']} changes, {r['epochs']} epochs, {r['minutes']} min"
            for rule, r in results["runs"][name].items()
        )
        print(f"{name} ({minutes:g} min, {len(times)} epochs recorded): {row}")
    if args.output:
        write_text(args.output, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
