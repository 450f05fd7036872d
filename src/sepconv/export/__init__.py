"""Models for ONNX Runtime and LiteRT: fold, export (float32 or int8), check in the runtime.

```python
from sepconv.export import export_model, check_export, fold_batch_norm

info = export_model(model, "model.onnx")                       # or "model.tflite"
info = export_model(model, "model-int8.tflite", quantize="int8", calibration=images)
check = check_export(model, "model.onnx", x, y)               # max abs diff, top-1, accuracy
```

Needs the `export` extra (`pip install 'sepconv[export]'`: onnx, onnxruntime, tf2onnx,
ai-edge-litert). Which backend writes which format: see `sepconv.export._formats`.
"""

from sepconv.export._export import (
    FLOAT_TOLERANCE,
    INT8_AGREEMENT,
    check_export,
    cifar10_images,
    export_model,
)
from sepconv.export._folding import batch_norm_affine, fold_batch_norm
from sepconv.export._formats import FORMATS, QUANTIZATIONS, MissingPackageError, format_of
from sepconv.export._runtime import open_runtime, run_batches

__all__ = [
    "FLOAT_TOLERANCE",
    "FORMATS",
    "INT8_AGREEMENT",
    "MissingPackageError",
    "QUANTIZATIONS",
    "batch_norm_affine",
    "check_export",
    "cifar10_images",
    "export_model",
    "fold_batch_norm",
    "format_of",
    "open_runtime",
    "run_batches",
]
