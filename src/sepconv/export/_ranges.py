"""Percentile activation ranges, read the way ONNX Runtime's percentile calibrator reads them.

Each activation's range is clipped at a percentile of its absolute values over the
calibration images, so that one rare large value no longer widens every step of the
int8 grid: the values go into a histogram of `HISTOGRAM_BINS` bins on [0, max |x|], and
the threshold is the lower edge of the bin where the cumulative share reaches the
percentile. The LiteRT writer and the QAT simulation use it; ONNX files get their ranges
from ONNX Runtime's own calibrator.
"""

import numpy as np

HISTOGRAM_BINS = 2048  # ONNX Runtime's percentile calibrator's
PERCENTILE = 99.999  # and its default


class AbsoluteHistograms:
    """One histogram of |x| per tensor, each on [0, `largest[i]`] (its max |x| over the whole set)."""

    def __init__(self, largest):
        self.largest = np.maximum(np.asarray(largest, np.float64), 1e-12)
        self.counts = np.zeros((len(self.largest), HISTOGRAM_BINS), np.int64)

    def add(self, i, values):
        values = np.abs(np.asarray(values)).ravel()
        self.counts[i] += np.histogram(values, HISTOGRAM_BINS, range=(0.0, self.largest[i]))[0]

    def thresholds(self, percentile):
        """Per tensor: the `percentile` (in %) of |x|, to a bin's lower edge."""
        cdf = np.cumsum(self.counts, axis=1) / np.maximum(self.counts.sum(axis=1, keepdims=True), 1)
        index = np.array([np.searchsorted(row, percentile / 100.0) for row in cdf], dtype=np.int64)
        return index / HISTOGRAM_BINS * self.largest


def clipped(low, high, threshold):
    """`[low, high]` clipped to `[-threshold, threshold]`."""
    return np.maximum(low, -threshold), np.minimum(high, threshold)
