"""A `rich` rendering of a `ModelProfile`: one row per layer call, totals, notes."""

from rich.console import Group
from rich.table import Table
from rich.text import Text

__all__ = ["format_count", "render_profile"]


def format_count(value, unit=""):
    """Short human form: 568_740_000 -> "568.74M", 1_792 -> "1.79K", None -> "-"."""
    if value is None:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}{unit}"
    return f"{value:.2f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _shape(shapes):
    if not shapes:
        return ""
    return ", ".join("(" + ", ".join(str(d) for d in shape) + ")" for shape in shapes)


def _intensity(value):
    return "-" if value is None else f"{value:.2f}"


def render_profile(profile):
    """A printable `rich` group: the per-call table followed by notes."""
    table = Table(title=f"{profile.model_name} (batch {profile.batch_size}, {profile.method})")
    for header, justify in (
        ("Layer", "left"),
        ("Type", "left"),
        ("Output shape", "left"),
        ("Params", "right"),
        ("MACs", "right"),
        ("Bytes moved", "right"),
        ("FLOP/B", "right"),
    ):
        table.add_column(header, justify=justify, overflow="fold")
    for row in profile.layers:
        name = row.name if row.call_index == 1 else f"{row.name} (call {row.call_index})"
        table.add_row(
            name,
            row.class_name,
            _shape(row.output_shapes),
            f"{row.params:,}",
            "not counted" if row.macs is None else f"{row.macs:,}",
            format_count(row.bytes_moved, "B"),
            _intensity(row.arithmetic_intensity),
        )
    table.add_section()
    table.add_row(
        "Total",
        "",
        "",
        f"{profile.params:,}",
        f"{profile.macs:,}",
        format_count(profile.bytes_moved, "B"),
        _intensity(profile.arithmetic_intensity),
        style="bold",
    )
    notes = [
        f"Params: {profile.params:,} ({profile.trainable_params:,} trainable, "
        f"{profile.non_trainable_params:,} non-trainable)",
        f"MACs: {profile.macs:,} ({format_count(profile.macs)}); FLOPs: {profile.flops:,} ({format_count(profile.flops)})",
        f"Convention: {profile.convention}",
        "Bytes moved: each call reads its inputs and weights and writes its outputs once "
        "(no cache reuse, no fusion; 1KB = 1000 B); FLOP/B = FLOPs / bytes moved.",
    ]
    leaves = [row.name for row in profile.layers if row.macs is None and not row.container]
    containers = [row.name for row in profile.layers if row.container]
    if leaves:
        what = "1 call of a layer" if len(leaves) == 1 else f"{len(leaves)} calls of layers"
        notes.append(f"Not counted ({what} without a MAC rule, excluded from the MAC total): {', '.join(leaves)}")
    if containers:
        notes.append(
            "Not counted (computation outside sub-layers, e.g. keras.ops in call(), is not visible; "
            f"sub-layers are counted in their own rows): {', '.join(containers)}"
        )
    if profile.unused_weights:
        notes.append(f"Weights used by no call (in the parameter total only): {', '.join(profile.unused_weights)}")
    return Group(table, *(Text(note) for note in notes))
