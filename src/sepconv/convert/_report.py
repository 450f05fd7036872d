"""What `convert` did: one row per converted layer, the skipped layers, totals."""

import dataclasses
import math

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sepconv.analysis import format_count

__all__ = ["ConversionReport", "ConvertedLayer", "SkippedLayer", "render_report"]


@dataclasses.dataclass(frozen=True)
class ConvertedLayer:
    """One convolution replaced by a depthwise separable layer.

    `rank` is the new layer's depth multiplier; at `full_rank` (``min(K, N)``)
    the conversion is exact. `energy` is the fraction of the kernel's squared
    Frobenius norm kept, so `kernel_error` ``= sqrt(1 - energy)`` is the
    kernel's relative Frobenius error. `output_error` is the layer's relative
    output error on the calibration data (None when not measured). MACs are
    per sample, summed over the layer's calls; None when shapes are unknown.
    `reconstruction_error_before`/`_after` are the relative errors of the
    layer's pre-activation output, fed the converted network's inputs, against
    the original layer's on its own inputs, on the calibration data, for the
    SVD factors and after reconstruction (None when not reconstructed);
    `reconstruction_steps` the error after each least-squares step, starting
    from `reconstruction_start` ("svd", or "whitened" when the data-aware SVD
    was the better start). `reconstruction_relu_errors`: for a layer whose
    output goes through a ReLU, with ReLU rounds, the relative error after the
    ReLU, same inputs, of the pre-activation fit and after each round (the
    best is kept); empty otherwise. For such a layer
    `reconstruction_error_after` is the pre-activation error of the weights
    kept, which may exceed `reconstruction_error_before` (the rounds give up
    pre-activation accuracy where the ReLU hides it). `reconstruction_passes`:
    the passes over the calibration data that ran both networks for the layer
    (the ReLU rounds reuse the first pass's inputs while they fit in
    `KEPT_BYTES`); 0 when not reconstructed.
    """

    name: str
    class_name: str
    kernel_size: tuple
    in_channels: int
    filters: int
    rank: int
    full_rank: int
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    energy: float
    output_error: float | None
    notes: tuple = ()
    reconstruction_error_before: float | None = None
    reconstruction_error_after: float | None = None
    reconstruction_steps: tuple = ()
    reconstruction_start: str | None = None
    reconstruction_relu_errors: tuple = ()
    reconstruction_passes: int = 0

    @property
    def kernel_error(self):
        return math.sqrt(max(0.0, 1.0 - self.energy))

    def to_dict(self):
        row = dataclasses.asdict(self)
        row.update(
            kernel_size=list(self.kernel_size),
            notes=list(self.notes),
            kernel_error=self.kernel_error,
            reconstruction_steps=list(self.reconstruction_steps),
            reconstruction_relu_errors=list(self.reconstruction_relu_errors),
        )
        return row


@dataclasses.dataclass(frozen=True)
class SkippedLayer:
    """A convolution layer left as it is, and why."""

    name: str
    class_name: str
    reason: str

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """The result of `sepconv.convert.convert` besides the model.

    `rule` names how ranks were chosen; `calibration` where output errors come
    from; `counting` how parameters and MACs were counted; `reconstruction`
    how layers were refitted on the data (and the memory it took);
    `network_error_before`/`_after` the relative error of the model's outputs
    on the calibration data, SVD only and after reconstruction. Model totals
    (`params_*`, `macs_*`) cover every layer; `macs_*` are None when the
    model's shapes are not fully known.
    """

    model_name: str
    rule: str
    layers: tuple
    skipped: tuple
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    calibration: str
    counting: str
    reconstruction: str = "not done (reconstruct=False)"
    network_error_before: float | None = None
    network_error_after: float | None = None

    def to_dict(self):
        """A JSON-ready dictionary of everything in the report."""
        return {
            "model_name": self.model_name,
            "rule": self.rule,
            "calibration": self.calibration,
            "counting": self.counting,
            "reconstruction": self.reconstruction,
            "network_error_before": self.network_error_before,
            "network_error_after": self.network_error_after,
            "totals": {
                "params_before": self.params_before,
                "params_after": self.params_after,
                "params_ratio": self.params_after / self.params_before if self.params_before else None,
                "macs_before": self.macs_before,
                "macs_after": self.macs_after,
                "macs_ratio": _ratio(self.macs_after, self.macs_before),
            },
            "layers": [layer.to_dict() for layer in self.layers],
            "skipped": [layer.to_dict() for layer in self.skipped],
        }


def _ratio(after, before):
    return None if after is None or before in (None, 0) else after / before


def _change(before, after):
    if before is None or after is None:
        return "-"
    return f"{format_count(before)} -> {format_count(after)}"


def _fraction(value):
    return "-" if value is None else f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def render_report(report):
    """A printable `rich` group: converted layers, skipped layers, totals and notes."""
    table = Table(title=f"{report.model_name}: convolutions -> depthwise separable ({report.rule})")
    for header, justify in (
        ("Layer", "left"),
        ("Kernel", "left"),
        ("Rank", "right"),
        ("Params", "right"),
        ("MACs", "right"),
        ("Energy kept", "right"),
        ("Kernel error", "right"),
        ("Output error", "right"),
        ("Reconstructed error", "right"),
    ):
        table.add_column(header, justify=justify, overflow="fold")
    for row in report.layers:
        kernel = "x".join(map(str, row.kernel_size)) + f", {row.in_channels}->{row.filters}"
        table.add_row(
            row.name,
            kernel,
            f"{row.rank}/{row.full_rank}",
            _change(row.params_before, row.params_after),
            _change(row.macs_before, row.macs_after),
            f"{row.energy:.4f}",
            _fraction(row.kernel_error),
            _fraction(row.output_error),
            "-"
            if row.reconstruction_error_after is None
            else f"{_fraction(row.reconstruction_error_before)} -> {_fraction(row.reconstruction_error_after)}",
        )
    parts = [table]
    if report.skipped:
        skipped = Table(title="Left as they are")
        for header in ("Layer", "Type", "Reason"):
            skipped.add_column(header, overflow="fold")
        for row in report.skipped:
            skipped.add_row(row.name, row.class_name, row.reason)
        parts.append(skipped)
    totals = report.to_dict()["totals"]
    notes = [
        f"Model params: {report.params_before:,} -> {report.params_after:,} (x{totals['params_ratio']:.4f})",
        "Model MACs: "
        + (
            f"{report.macs_before:,} -> {report.macs_after:,} (x{totals['macs_ratio']:.4f})"
            if totals["macs_ratio"] is not None
            else "not counted (input shape unknown)"
        ),
        f"Rank = depth multiplier; full rank = min(kernel taps, filters) is exact. Calibration: {report.calibration}",
        f"Counting: {report.counting}",
        f"Reconstruction: {report.reconstruction}",
    ]
    if report.network_error_after is not None:
        notes += [
            f"Model output error on the calibration data: {_fraction(report.network_error_before)} (SVD) -> "
            f"{_fraction(report.network_error_after)} (reconstructed). Reconstructed error: each layer before its "
            "activation, fed the converted network's inputs (after ReLU rounds it may rise: they fit what "
            "passes the ReLU); Output error: each layer alone on the original network's inputs (a reconstructed "
            "layer also corrects its predecessors' errors, so it can be large)."
        ]
        notes += [
            f"{row.name}: error after its ReLU "
            + " -> ".join(_fraction(e) for e in row.reconstruction_relu_errors)
            + " (pre-activation fit, then each ReLU round; the lowest is kept)"
            for row in report.layers
            if row.reconstruction_relu_errors
        ]
    notes += [f"{row.name}: {note}" for row in report.layers for note in row.notes]
    return Group(*parts, *(Text(note) for note in notes))
