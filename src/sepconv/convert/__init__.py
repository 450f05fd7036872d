"""Trained convolutions as depthwise separable ones, keeping what was learned.

```python
from sepconv.convert import convert, render_report

new_model, report = convert(model, energy=0.95, calibration=x_val[:64])
rich.print(render_report(report))
new_model, report = convert(model, rank=1, calibration=x_train[:1024], reconstruct=True)
finetune(new_model, train_batches, teacher=model)    # distillation from the original
```

Each Keras `Conv1D`/`Conv2D` with a kernel larger than 1x1 becomes a
`DepthwiseSeparableConv1D`/`2D` initialized by Network Decoupling (Guo et al.,
BMVC 2018, arXiv:1808.05517): exact at full rank, the best per-channel
low-rank approximation below it. With `reconstruct=True` each converted layer
is then refitted, in network order, to the original's outputs on unlabeled
calibration data (`_least_squares`, `_reconstruct`). `finetune` trains the
result a little, on labels or by distillation from the original.
"""

from sepconv.convert._convert import convert
from sepconv.convert._factorize import factorize, full_rank, singular_values
from sepconv.convert._finetune import cifar10_calibration, finetune, finetune_on_cifar10
from sepconv.convert._report import ConversionReport, ConvertedLayer, SkippedLayer, render_report

__all__ = [
    "ConversionReport",
    "ConvertedLayer",
    "SkippedLayer",
    "cifar10_calibration",
    "convert",
    "factorize",
    "finetune",
    "finetune_on_cifar10",
    "full_rank",
    "render_report",
    "singular_values",
]
