"""Training and comparing models on CIFAR-10 with `model.fit`, into self-describing run folders.

```python
from sepconv.training import compare, make_config

config = make_config("tutorial", preset="quick")      # recipe, preset, then overrides
run = compare(["vgg", "vgg_separable"], config, out="runs/quick")
run.models["vgg"]["best_val_accuracy"]
```

A run folder holds config.json (config, data, backend, device, versions, git commit),
history.csv, results.json, per-model checkpoints, report.md, report.html and plots;
`resume(folder)` continues an interrupted run; `evaluate_run(folder, split="test")` scores its
saved models, with test-time augmentation, once training is over.
"""

from sepconv.training._config import OPTIMIZERS, PRESETS, RECIPES, SCHEDULES, TrainConfig, make_config
from sepconv.training._distribution import DistributionConfig, Placement
from sepconv.training._distribution import start as start_distribution
from sepconv.training._evaluate import evaluate_model, evaluate_run
from sepconv.training._experiment import DEFAULT_MODELS, RunResult, compare, resume, train
from sepconv.losses import SparseCrossentropy

__all__ = [
    "DEFAULT_MODELS",
    "DistributionConfig",
    "OPTIMIZERS",
    "PRESETS",
    "Placement",
    "RECIPES",
    "RunResult",
    "SCHEDULES",
    "SparseCrossentropy",
    "TrainConfig",
    "compare",
    "evaluate_model",
    "evaluate_run",
    "make_config",
    "resume",
    "start_distribution",
    "train",
]
