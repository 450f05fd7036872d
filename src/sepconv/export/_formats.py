"""Which format a path names, which backend can write it, and what must be installed.

Keras 3.15's `model.export` writes ONNX from TensorFlow (tf2onnx), JAX (jax2onnx) and
PyTorch (torch.onnx), and LiteRT (`.tflite`) from TensorFlow (its converter) and
PyTorch (litert-torch). Every check here runs before anything is written.
"""

import importlib.util
import os

import keras

from sepconv import _validation

EXTENSIONS = {".onnx": "onnx", ".tflite": "litert"}
FORMATS = tuple(EXTENSIONS.values())
QUANTIZATIONS = ("none", "int8")
# format -> backend -> the packages Keras' exporter imports there
_EXPORTERS = {
    "onnx": {"tensorflow": ("tf2onnx", "onnx"), "jax": ("jax2onnx", "onnx"), "torch": ("onnx",)},
    "litert": {"tensorflow": (), "torch": ("litert_torch",)},
}
# int8 post-training static quantization: LiteRT's converter needs TensorFlow; ONNX
# Runtime quantizes any float ONNX file.
_INT8_BACKENDS = {"onnx": ("tensorflow", "jax", "torch"), "litert": ("tensorflow",)}
RUNTIME_PACKAGES = {"onnx": ("onnxruntime",), "litert": ("ai_edge_litert",)}
# import name -> what to pip install
_INSTALL = {"litert_torch": "litert-torch", "jax2onnx": "jax2onnx", "ai_edge_litert": "ai-edge-litert"}
_EXTRA = {"tf2onnx", "onnx", "onnxruntime", "ai_edge_litert"}  # what `sepconv[export]` installs


class MissingPackageError(ImportError):
    """An export step needs a package that is not installed (the message says which to install)."""


def format_of(path, name="path"):
    """"onnx" or "litert" from the file's extension; a ValueError for any other."""
    extension = os.path.splitext(str(path))[1].lower()
    if extension not in EXTENSIONS:
        raise ValueError(
            f"{name} must end in {' or '.join(EXTENSIONS)} (ONNX or LiteRT). Received: {name}={path}"
        )
    return EXTENSIONS[extension]


def check_backend(fmt, quantize="none", backend=None):
    """Raises a ValueError where the current Keras backend cannot write `fmt` (quantized so)."""
    backend = backend or keras.backend.backend()
    allowed = tuple(_EXPORTERS[fmt]) if quantize == "none" else _INT8_BACKENDS[fmt]
    if backend not in allowed:
        what = "int8 " if quantize != "none" else ""
        raise ValueError(
            f"Keras cannot export {what}{fmt} from the {backend} backend; it can from {', '.join(allowed)} "
            f"(set KERAS_BACKEND). Received: backend={backend!r}, format={fmt!r}"
        )


def require(modules, purpose):
    """Raises `MissingPackageError` naming what to install if any of `modules` is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    extra = all(m in _EXTRA for m in missing)
    packages = " ".join(_INSTALL.get(m, m) for m in missing)
    hint = "pip install 'sepconv[export]'" if extra else f"pip install {packages}"
    raise MissingPackageError(
        f"{purpose} needs {', '.join(_INSTALL.get(m, m) for m in missing)}: {hint}. Received: missing={missing}"
    )


def check_request(path, quantize="none", name="path"):
    """The format of `path` after checking backend and installed packages for writing and running it."""
    fmt = format_of(path, name)
    _validation.choice(quantize, QUANTIZATIONS, "quantize")
    check_backend(fmt, quantize)
    backend = keras.backend.backend()
    require(_EXPORTERS[fmt][backend], f"{fmt} export from {backend}")
    require(RUNTIME_PACKAGES[fmt] + (("onnx",) if fmt == "onnx" and quantize == "int8" else ()),
            f"running {fmt} files")  # fmt: skip
    return fmt
