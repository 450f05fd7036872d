"""Rich tables for `sepconv bench` results (the JSON holds every number)."""

from rich.markup import escape
from rich.table import Table

_OP_NAMES = {"depthwise": "depthwise", "pointwise": "pointwise", "dsc": "separable", "conv": "regular conv"}
_MODE_NAMES = {"forward": "fwd", "forward_backward": "fwd+bwd", "train": "train", "inference": "inference"}


def augment_label(augment, trivial_augment):
    """The `sepconv bench fit --augment` setting (off, on or trivial) of a run's two augmentation flags."""
    return "trivial" if trivial_augment else "on" if augment else "off"


def _ms(timing):
    if timing is None:
        return "-"
    return f"{timing['median_ms']:.2f} [{timing['q1_ms']:.2f}-{timing['q3_ms']:.2f}]"


def _number(value, spec):
    return "-" if value is None else format(value, spec)


def _percent(fraction):
    return "-" if fraction is None else f"{100 * fraction:.0f}%"


def environment_line(result):
    env = result["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    git = env.get("git") or {}
    commit = git.get("commit", "unknown")[:10] + (" (modified)" if git.get("dirty") else "")
    return f"{env['backend']} on {env['device']}, {env['threads']} threads; {versions}; commit {commit}"


def machine_line(result):
    parts = []
    for dtype, peak in result["machine"]["matmul"].items():
        parts.append(f"{peak['size']}x{peak['size']} {dtype} matmul {peak['gflops_per_s']:.1f} GFLOP/s")
    return "Measured peak: " + "; ".join(parts)


def layer_table(result):
    config = result["config"]
    table = Table(
        title=f"sepconv bench layer: batch {config['batch_size']}, {config['kernel_size']}x{config['kernel_size']} "
        f"'same', stride 1, implementation {config['implementation']}",
        caption=escape(
            "ms: median [first-third quartile]. x copy: time / time of copying the input. "
            "Roofline: time the measured matmul peak and copy bandwidth allow / measured time."
        ),
    )
    columns = (
        "shape", "op", "dir", "impl", "sepconv ms", "Keras ms", "Keras / sepconv", "copy ms", "x copy",
        "GFLOP", "MB", "FLOP/B", "GFLOP/s", "GB/s", "roofline", "bound",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("shape", "op", "dir", "impl", "bound") else "right")
    for r in result["results"]:
        name = "ours" if r.get("ours") else "keras" if r.get("keras") else None
        shape = "x".join(map(str, r["shape"])) + (f":{r['filters']}" if r["filters"] != r["shape"][-1] else "")
        if r["data_format"] != "channels_last" or r["dtype"] != "float32":
            shape += f" {r['dtype']} {'NCHW' if r['data_format'] == 'channels_first' else 'NHWC'}"
        table.add_row(
            shape,
            _OP_NAMES[r["op"]],
            _MODE_NAMES[r["mode"]],
            r["implementation"] or "-",
            _ms(r.get("ours")),
            _ms(r.get("keras")) if "keras_error" not in r else "unsupported",
            _number(r.get("speedup_vs_keras"), ".2f"),
            f"{r['copy']['median_ms']:.2f}",
            _number(r.get(f"{name}_vs_copy"), ".1f"),
            f"{r['flops'] / 1e9:.2f}",
            f"{r['bytes'] / 1e6:.0f}",
            f"{r['arithmetic_intensity']:.1f}",
            _number(r.get(f"{name}_gflops_per_s"), ".1f"),
            _number(r.get(f"{name}_gb_per_s"), ".1f"),
            _percent(r.get(f"{name}_roofline_fraction")),
            r["bound"],
        )
    return table


def model_table(result):
    config = result["config"]
    first = result["results"][0]["model"]
    table = Table(
        title=f"sepconv bench model: batch {config['batch_size']}, {config['dtype_policy']}, "
        f"optimizer {config['optimizer']}, implementation {config['implementation']}"
        + "".join(f", {key}={value!r}" for key, value in config.get("model_kwargs", {}).items()),
        caption=escape("img/s: batch / median step time [from third / first quartile step time]."),
    )
    columns = (
        "model", "mode", "depthwise", "params", "GFLOP/img", "step ms", "img/s", f"vs {first}", "GFLOP/s", "of peak",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "mode", "depthwise") else "right")
    for r in result["results"]:
        low, high = r["images_per_s_q1_q3"]
        table.add_row(
            r["model"],
            _MODE_NAMES[r["mode"]],
            ", ".join(r["depthwise_implementations"]) or "-",
            f"{r['params']:,}",
            _number(r["flops_per_image"] and r["flops_per_image"] / 1e9, ".3f"),
            f"{r['step']['median_ms']:.1f}",
            f"{r['images_per_s']:.0f} [{low:.0f}-{high:.0f}]",
            f"{r['speedup_vs_first']:.2f}x",
            _number(r["gflops_per_s"], ".1f"),
            _percent(r["fraction_of_matmul_peak"]),
        )
    return table


def fit_table(result):
    config = result["config"]
    table = Table(
        title=f"sepconv bench fit: batch {config['batch_size']}, {result['data']['train_images']:,} training images, "
        f"recipe {config['recipe']}, {config['dtype_policy']}, implementation {config['implementation']}",
        caption=escape(
            "step: train_on_batch on one batch, median [quartiles], in blocks of one epoch between the epochs. "
            "fit: img/s of whole epochs as sepconv train reports them. fit / step: median over epochs of each "
            "epoch against the step blocks around it."
        ),
    )
    for column in ("model", "augment", "step ms", "step img/s", "fit img/s (epochs)", "fit / step"):
        table.add_column(column, justify="left" if column in ("model", "augment") else "right")
    for r in result["results"]:
        step = r["step"]
        epochs = ", ".join(f"{v:.0f}" for v in r["fit_epochs_images_per_s"])
        table.add_row(
            r["model"],
            augment_label(r["augment"], r.get("trivial_augment", False)),  # records before it: no key
            f"{step['median_ms']:.1f} [{step['q1_ms']:.1f}-{step['q3_ms']:.1f}]",
            f"{r['step_images_per_s']:.0f}",
            f"{r['fit_images_per_s']:.0f} ({epochs})",
            f"{r['fit_vs_step']:.2f}",
        )
    return table


def tune_table(result):
    table = Table(
        title=f"sepconv bench tune: forward+backward ms per depthwise implementation; cache {result['cache']}"
    )
    names = sorted({name for r in result["results"] for name in r["timings_ms"]})
    for column in ("model", "input", "kernel", "strides", *names, "chosen"):
        table.add_column(column, justify="right" if column in names else "left")
    for r in result["results"]:
        call = r["call"]
        table.add_row(
            r["model"],
            "x".join(map(str, call["input_shape"])) + f" {call['dtype']}",
            "x".join(map(str, call["kernel_shape"])),
            "x".join(map(str, call["strides"])),
            *(f"{r['timings_ms'][name]:.2f}" for name in names),
            r["implementation"],
        )
    return table


def layer_summary(result):
    """One line per shape and direction: separable vs regular, and what bounds the separable."""
    records = result["results"]
    lines = []
    for r in records:
        if r["op"] != "dsc" or "ours" not in r:
            continue
        peak = result["machine"]["matmul"][r["dtype"]]["gflops_per_s"]
        balance = peak / r["copy_gb_per_s"]
        regular = next(
            (
                c
                for c in records
                if c["op"] == "conv" and "keras" in c
                and all(c[k] == r[k] for k in ("shape", "filters", "dtype", "data_format", "mode"))
            ),
            None,
        )
        shape = "x".join(map(str, r["shape"])) + f" {_MODE_NAMES[r['mode']]}"
        text = f"{shape}: separable"
        if regular:
            speedup = regular["keras"]["median_ms"] / r["ours"]["median_ms"]
            fewer = regular["macs"] / r["macs"]
            text += f" runs {speedup:.2f}x as fast as the regular conv with {fewer:.1f}x fewer MACs;"
        bound = "memory-bound" if r["arithmetic_intensity"] < balance else "compute-bound"
        text += (
            f" {r['arithmetic_intensity']:.0f} FLOP/B vs a machine balance of {balance:.0f} FLOP/B ({bound}):"
            f" {r['ours_vs_copy']:.1f}x the time of copying its input, {_percent(r['ours_roofline_fraction'])}"
            " of its roofline."
        )
        lines.append(text)
    return lines


def _flops_ratio(base, flops):
    if abs(base - flops) <= 0.005 * base:
        return "the same FLOPs"
    if flops < base:
        return f"{base / flops:.1f}x fewer FLOPs"
    return f"{flops / base:.1f}x more FLOPs"


def model_summary(result):
    """One line per model and mode: speed and FLOP ratios to the first model."""
    first = result["results"][0]["model"]
    by_mode = {}
    for r in result["results"]:
        by_mode.setdefault(r["mode"], {})[r["model"]] = r
    lines = []
    for mode, rows in by_mode.items():
        base = rows[first]
        for name, r in rows.items():
            if name == first or not (r["flops_per_image"] and base["flops_per_image"]):
                continue
            lines.append(
                f"{mode}: {name} runs {r['speedup_vs_first']:.2f}x as fast as {first} with "
                f"{_flops_ratio(base['flops_per_image'], r['flops_per_image'])}; it reaches "
                f"{_percent(r['fraction_of_matmul_peak'])} of the matmul peak, "
                f"{first} {_percent(base['fraction_of_matmul_peak'])}."
            )
    return lines


def export_table(result):
    config = result["config"]
    table = Table(
        title=f"sepconv bench export: single image and batch {config['batch_size']}, {config['threads']} runtime threads",
        caption=escape(
            "ms: median [first-third quartile]. x first: time of the first model / this model's (same runtime, "
            "precision, call). int8 x: float32 time / int8 (int8-a16, int8-f32) time."
        ),
    )
    for column in ("model", "runtime", "precision", "MACs", "MB", "1 image ms", "x first", "int8 x",
                   "batch ms", "img/s", "x first ", "int8 x "):  # fmt: skip
        table.add_column(column, justify="left" if column in ("model", "runtime", "precision") else "right")
    rows = {}
    for r in result["results"]:
        rows.setdefault((r["model"], r["runtime"], r["precision"]), {})[r["call"]] = r
    for (model, runtime, precision), calls in rows.items():
        single, batch = calls.get("single"), calls.get("batch")
        table.add_row(
            model,
            runtime,
            precision,
            f"{single['macs_per_image'] / 1e6:.1f}M" if single and single.get("macs_per_image") else "-",
            f"{single['bytes'] / 1e6:.2f}" if single and "bytes" in single else "-",
            _ms(single["time"]) if single else "-",
            _number(single and single["speedup_vs_first"], ".2f"),
            _number(single and single["int8_speedup"], ".2f"),
            _ms(batch["time"]) if batch else "-",
            _number(batch and batch["images_per_s"], ".0f"),
            _number(batch and batch["speedup_vs_first"], ".2f"),
            _number(batch and batch["int8_speedup"], ".2f"),
        )
    return table


def profile_table(result, model, top=8):
    table = Table(title=f"ONNX Runtime profile of {model} (float32, single image): time by operator type")
    for column in ("operator", "share", "us / image"):
        table.add_column(column, justify="left" if column == "operator" else "right")
    for op, row in list(result["profiles"][model].items())[:top]:
        table.add_row(op, _percent(row["share"]), f"{row['us_per_image']:.0f}")
    return table
