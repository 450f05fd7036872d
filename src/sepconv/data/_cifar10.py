"""The CIFAR-10 arrays and their class names."""

import dataclasses

import numpy as np

# Official label order (batches.meta of the python release); alphabetical, so sorted
# image-folder class names give the same labels.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Cifar10:
    """CIFAR-10 as numpy arrays, as returned by `load_cifar10`.

    Attributes:
        x_train: uint8 array `(50000, 32, 32, 3)`, NHWC, RGB.
        y_train: int64 array `(50000,)` of labels in `range(len(class_names))`.
        x_test: uint8 array `(10000, 32, 32, 3)`.
        y_test: int64 array `(10000,)`.
        class_names: label `i` is `class_names[i]`.
        source: which copy the arrays came from, e.g.
            `"image-folder JPEG copy at /data/cifar10-jpeg.tar.gz (tar.gz)"` or
            `"keras.datasets (official)"`. Results should quote it: re-encoded copies
            differ slightly from the official pixels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    source: str

    def __repr__(self):
        return (
            f"Cifar10(x_train={self.x_train.shape}, x_test={self.x_test.shape}, "
            f"classes={len(self.class_names)}, source={self.source!r})"
        )
