"""What a report says, as a list of blocks that the Markdown and HTML renderers share.

Blocks are tuples: `("title", text)`, `("heading", text)`, `("text", text)`,
`("note", text)`, `("table", header, rows)`, `("figure", file name, caption)`,
`("code", text)` and `("items", [text, ...])`. Text is plain (no markup).
"""

import re

from sepconv.analysis import format_count

_NUMBER = re.compile(r"^[+-]?\d[\d,.]*\S*( \(\d+\)| points)?$")


def numeric(cells):
    """Whether a table column holds numbers only (renderers right-align those)."""
    return bool(cells) and all(_NUMBER.match(str(cell)) for cell in cells)


def report_blocks(run, plots):
    """The blocks of the report of `run`; `plots` is `[(file name, caption), ...]`."""
    record, config = run.record, run.record["config"]
    environment = record["environment"]
    blocks = [("title", f"sepconv: {' vs '.join(run.models)} on CIFAR-10")]
    if config.get("preset") == "quick":
        blocks.append(("note", _quick_note(record)))
    blocks.append(
        (
            "text",
            f"Recipe '{config['recipe']}'{_preset(config)}: {_optimization(config)}. "
            f"{record['data']['train_images']:,} training and {record['data']['val_images']:,} validation "
            f"images, seed {config['seed']}. Backend {environment['backend']} on {environment['device']} "
            f"({environment['cpu']}).",
        )
    )
    blocks += [("heading", "Results"), _results_table(run)]
    if len(run.results) > 1:
        blocks += [("text", f"Relative to {run.models[0]}, measured in the same run:"), _relative_table(run)]
    blocks.append(("items", _notes(run)))
    blocks.append(("heading", "Figures"))
    blocks += [("figure", name, caption) for name, caption in plots]
    blocks += _provenance(run)
    return blocks


def _quick_note(record):
    config, data = record["config"], record["data"]
    budget = config.get("time_budget")
    epochs = f"{budget:g} min of wall clock" if budget else f"{config['epochs']} epochs"
    return (
        f"Quick preset: {data['train_images']:,} training images, {epochs}, "
        f"{data['val_images']:,} validation images. It shows that the pipeline works end to end; "
        "the accuracies are far below what these models reach with the full data and schedule."
    )


def _preset(config):
    return f" with preset '{config['preset']}'" if config.get("preset") else ""


def _optimization(config):
    parts = [f"{config['optimizer']} lr {config['lr']:g}", f"{config['schedule']} schedule"]
    if config["schedule"] == "cosine" and config["warmup_epochs"]:
        parts[-1] += f" after {config['warmup_epochs']:g} warmup epochs"
    if config["weight_decay"]:
        kept = [kind for kind in config.get("no_decay", ()) if kind != "none"]
        parts.append(f"weight decay {config['weight_decay']:g}" + (f" (not on {', '.join(kept)})" if kept else ""))
    if config["label_smoothing"]:
        parts.append(f"label smoothing {config['label_smoothing']:g}")
    parts.append("crop+flip augmentation" if config["augment"] else "no augmentation")
    if config.get("cutout"):
        parts[-1] += f", cutout {config['cutout']}"
    if config.get("mixup"):
        parts[-1] += f", mixup {config['mixup']:g}"
    if config.get("ema_momentum"):
        parts.append(f"weight EMA {config['ema_momentum']:g}")
    if config.get("time_budget"):
        epochs = f"as many epochs as fit in {config['time_budget']:g} min of wall clock per model"
    else:
        epochs = f"{config['epochs']} epochs"
    parts.append(f"batch {config['batch_size']}, {epochs}")
    return ", ".join(parts)


def _results_table(run):
    with_test = any(r.get("test_accuracy") is not None for r in run.results)
    with_tta = any(r.get("test_accuracy_tta") is not None for r in run.results)
    header = ["model", "params", "MACs", "epochs", "training (min)", "time/epoch (s)", "img/s",
              "best val acc (epoch)", "final val acc", "train-val gap"]  # fmt: skip
    header += ["test acc (best model)"] if with_test else []
    shift = run.record["config"].get("tta_shift", 0)  # absent from runs that predate it
    tta = f"test acc, TTA (mirrors of shifts by {shift} px)" if shift else "test acc, flip TTA"
    header += [tta] if with_tta else []
    rows = []
    for r in run.results:
        row = [
            r["model"],
            f"{r['params']:,}",
            format_count(r["macs"]),
            str(r["epochs"]),
            "-" if r.get("train_time_s") is None else f"{r['train_time_s'] / 60:.1f}",  # older results.json
            f"{r['median_epoch_time_s']:.2f}",
            f"{r['median_images_per_s']:,.0f}",
            f"{r['best_val_accuracy']:.4f} ({r['best_epoch']})",
            f"{r['final_val_accuracy']:.4f}",
            f"{r['train_val_gap']:+.4f}",
        ]
        if with_test:
            row.append("-" if r.get("test_accuracy") is None else f"{r['test_accuracy']:.4f}")
        if with_tta:
            row.append("-" if r.get("test_accuracy_tta") is None else f"{r['test_accuracy_tta']:.4f}")
        rows.append(row)
    return ("table", header, rows)


def _relative_table(run):
    base = run.results[0]
    rows = []
    for r in run.results[1:]:
        rows.append(
            [
                r["model"],
                f"{r['params'] / base['params']:.3f}x",
                f"{r['macs'] / base['macs']:.3f}x" if base["macs"] else "-",
                f"{r['median_epoch_time_s'] / base['median_epoch_time_s']:.2f}x",
                f"{100 * (r['best_val_accuracy'] - base['best_val_accuracy']):+.1f} points",
            ]
        )
    return ("table", ["model", "params", "MACs", "time/epoch", "best val acc"], rows)


def _notes(run):
    notes = [run.notes["timing"] + ".", run.notes["macs"], run.notes["gap"] + "."]
    single = [r["model"] for r in run.results if r["timed_epochs"] == [1]]
    if single:
        notes.insert(1, f"Only one epoch for {', '.join(single)}: its time includes tracing and compilation.")
    notes.append(f"Validation: {run.record['data']['validation']}.")
    spent = [f"{r['model']} {r['budget_elapsed_s'] / 60:.1f}" for r in run.results if r.get("budget_elapsed_s")]
    if spent:
        notes.append(
            f"Wall clock of the training under the {run.record['config']['time_budget']:g}-minute budget "
            f"(steps, validation, checkpoints), in minutes: {', '.join(spent)}."
        )
    if any(start.get("keras_distribution") for start in _starts(run.record)):
        notes.append(_distribution_note(run))
    chance = 1 / len(run.record["data"]["class_names"])
    stuck = [r["model"] for r in run.results if r["best_val_accuracy"] <= chance + 0.02]
    if stuck:
        notes.append(
            f"{', '.join(stuck)} did not get beyond chance level (1/{len(run.record['data']['class_names'])} = "
            f"{chance:.2f}) in this run."
        )
    environment = run.record["environment"]
    load, cores = environment.get("load_average"), environment.get("cores")
    if load is not None and cores and load > cores:
        notes.append(
            f"The machine was busy when the run started (1-minute load average {load:g} on {cores} usable "
            "cores): times are longer than on an idle machine."
        )
    return notes


def _starts(record):
    """The distribution record of the run's start and of each resume (older runs have none)."""
    starts = [record.get("distribution")] + [r.get("distribution") for r in record.get("resumed", ())]
    return [start for start in starts if start]


def _distribution_note(run):
    """Devices, processes and images per second per device (`sepconv.training._distribution`)."""

    def where(start):
        return (
            f"{start['devices']} device(s), {start['processes']} process(es) ({start['devices_per_process']} per "
            f"process), {start.get('per_device_batch_size', '-')} images per device per step"
        )

    starts = _starts(run.record)
    text = f"Started on {where(starts[0])}" + "".join(f"; resumed on {where(start)}" for start in starts[1:])
    rates = ", ".join(
        f"{r['model']} {r['median_images_per_s_per_device']:,.0f}" for r in run.results if "devices" in r
    )
    mixed = " (medians may mix epochs on different device counts)" if len({s["devices"] for s in starts}) > 1 else ""
    return f"{text}; img/s per device: {rates or '-'}{mixed}."


def _provenance(run):
    record, environment = run.record, run.record["environment"]
    blocks = [("heading", "How this was produced")]
    blocks += [("text", "Command:"), ("code", environment["command"])]
    if record.get("rerun"):
        blocks += [("text", "The same run with every setting spelled out:"), ("code", record["rerun"])]
    settings = [[key, _value(value)] for key, value in record["config"].items()]
    blocks.append(("table", ["setting", "value"], settings))
    git = environment.get("git")
    commit = "not a git checkout" if not git else git["commit"]
    if git and git["dirty"]:
        commit += " (with uncommitted changes)"
    versions = ", ".join(f"{name} {version}" for name, version in environment["versions"].items())
    blocks.append(
        (
            "items",
            [
                f"Data: {record['data']['source']} (fingerprint {record['data']['fingerprint']})",
                f"Backend: {environment['backend']}; device: {environment['device']}; CPU: {environment['cpu']}; "
                f"load average at start: {environment.get('load_average', '-')}",
                f"Python {environment['python']} on {environment['platform']}",
                f"Versions: {versions}",
                f"Git commit: {commit}",
                f"Started: {environment['time']}",
            ]
            + [f"Resumed: {r['time']} ({r['backend']}, {r['device']}): {r['command']}" for r in record["resumed"]],
        )
    )
    blocks += [("text", "Splits:"), ("code", record["data"]["splits"])]
    return blocks


def _value(value):
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)
