"""Timing that explains itself: `sepconv bench layer | model | fit | export | tune`.

Every figure is a median over synchronized repeats after warm-up, measured
next to Keras' built-in layer and a memory copy of the same tensor in the
same run, with the machine's measured matmul peak, so each result says how
close it is to what the hardware allows and whether memory or compute
bounds it.
"""

from sepconv.bench._export import ExportBenchConfig
from sepconv.bench._export import run as run_export_bench
from sepconv.bench._fit import FitBenchConfig
from sepconv.bench._fit import run as run_fit_bench
from sepconv.bench._layer import LayerBenchConfig
from sepconv.bench._layer import run as run_layer_bench
from sepconv.bench._model import ModelBenchConfig
from sepconv.bench._model import run as run_model_bench
from sepconv.bench._timing import Timing, measure, measure_interleaved, sync
from sepconv.bench._tune import autotune

__all__ = [
    "ExportBenchConfig",
    "FitBenchConfig",
    "LayerBenchConfig",
    "ModelBenchConfig",
    "Timing",
    "autotune",
    "measure",
    "measure_interleaved",
    "run_export_bench",
    "run_fit_bench",
    "run_layer_bench",
    "run_model_bench",
    "sync",
]
