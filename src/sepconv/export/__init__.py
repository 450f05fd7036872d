"""Models for ONNX Runtime and LiteRT: fold, export (float32 or int8), check in the runtime.

```python
from sepconv.export import export_model, check_export, fold_batch_norm

info = export_model(model, "model.onnx")                       # or "model.tflite"
info = export_model(model, "model-int8.tflite", quantize="int8", calibration=images)
check = check_export(model, "model.onnx", x, y)               # max abs diff, top-1, accuracy

tuned = finetune_for_int8(model, train_images, images)         # quantization-aware, distilled
info = export_model(tuned.float_model, "model-int8.onnx", quantize="int8", calibration=images)
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
from sepconv.export._folding import batch_norm_affine, float32_model, fold_batch_norm
from sepconv.export._formats import FORMATS, QUANTIZATIONS, MissingPackageError, format_of
from sepconv.export._qat import ActivationQuantizer, SimulatedInt8, finetune_for_int8
from sepconv.export._runtime import open_runtime, run_batches

__all__ = [
    "FLOAT_TOLERANCE",
    "ActivationQuantizer",
    "FORMATS",
    "INT8_AGREEMENT",
    "MissingPackageError",
    "QUANTIZATIONS",
    "batch_norm_affine",
    "check_export",
    "cifar10_images",
    "export_model",
    "float32_model",
    "finetune_for_int8",
    "fold_batch_norm",
    "format_of",
    "open_runtime",
    "run_batches",
    "SimulatedInt8",
]
