"""Per-model summaries of a finished run (the rows of results.json and of the report table)."""

import statistics

from sepconv.analysis import MAC_CONVENTION

TIMING_NOTE = (
    "time/epoch and img/s are medians over epochs 2 and later (epoch 1 includes tracing and "
    "compilation); they time the training steps only, not validation or checkpointing, "
    "and training (min) is their sum over all epochs"
)
MACS_NOTE = f"MACs are per image, one forward pass (sepconv.analysis.profile_model). {MAC_CONVENTION}"
GAP_NOTE = (
    "train-val gap = final training accuracy - final validation accuracy; the training accuracy "
    "is the running mean over the last epoch (on augmented images when augmentation is on)"
)


def summarize(state):
    """A flat dict of the numbers a report shows for one model, from its `state.json`."""
    rows = state["history"]
    timed = rows[1:] or rows
    last = rows[-1]
    return {
        "model": state["model"],
        "params": state["params"],
        "macs": state["macs"],
        "epochs": len(rows),
        "train_time_s": sum(r["epoch_time_s"] for r in rows),
        "budget_elapsed_s": state.get("budget_elapsed_s"),  # wall clock a --time-budget run spent (TimeBudget)
        "median_epoch_time_s": statistics.median(r["epoch_time_s"] for r in timed),
        "median_images_per_s": statistics.median(r["images_per_s"] for r in timed),
        "timed_epochs": [r["epoch"] for r in timed],
        "best_epoch": state["best_epoch"],
        "best_val_accuracy": state["best_val_accuracy"],
        "final_val_accuracy": last["val_accuracy"],
        "final_accuracy": last["accuracy"],
        "train_val_gap": last["accuracy"] - last["val_accuracy"],
        "test_accuracy": state.get("test_accuracy"),
        "test_accuracy_tta": state.get("test_accuracy_tta"),
    }
