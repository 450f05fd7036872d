"""Training subsets and validation splits, stratified by class and fixed by a seed."""

import dataclasses
import numbers

import numpy as np

from sepconv import _validation
from sepconv.data._cifar10 import Cifar10


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """The arrays a run trains, validates and tests on, as returned by `make_splits`.

    `validation` says what the validation arrays are; when it is the test set,
    `x_val`/`y_val` are the very same arrays as `x_test`/`y_test`.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    validation: str
    class_names: tuple
    source: str
    seed: int

    def describe(self):
        """A few lines naming the size and origin of each split."""
        rows = (
            ("train", self.y_train, f"seed {self.seed}"),
            ("validation", self.y_val, self.validation),
            ("test", self.y_test, "the dataset's test set"),
        )
        num_classes = len(self.class_names)
        lines = [
            f"{name + ':':<12}{len(y):>6,} images, {_per_class(y, num_classes)}; {note}"
            for name, y, note in rows
        ]
        return "\n".join(lines + [f"{'source:':<12}{self.source}"])

    def __repr__(self):
        sizes = f"train={len(self.y_train)}, val={len(self.y_val)}, test={len(self.y_test)}"
        return f"Splits({sizes}, validation={self.validation!r})"


def _per_class(y, num_classes):
    counts = np.bincount(y, minlength=num_classes)
    low, high = counts.min(), counts.max()
    return f"{low:,} per class" if low == high else f"{low:,}-{high:,} per class"


def make_splits(data, *, train_size=None, validation="test", seed=0):
    """Chooses the training, validation and test arrays of a run.

    Selection is stratified: each class gets the same number of images as far as its
    size allows (any remainder goes to the lowest labels), drawn from one seeded
    permutation per class. Validation images are held out first, so the validation
    set does not depend on `train_size`, and for a fixed seed a smaller `train_size`
    gives a subset of a larger one. Selected indices keep the dataset's order.

    Args:
        data: a `Cifar10` from `load_cifar10`.
        train_size: number of training images, or None for all that remain after
            holding out validation images.
        validation: `"test"` validates on the test set (as the Keras tutorial does; the
            test set then is not held out), a float in (0, 1) holds out that fraction of
            the training set, an int holds out that many training images.
        seed: non-negative int fixing the selection.

    Returns:
        A `Splits`.
    """
    if not isinstance(data, Cifar10):
        raise TypeError(f"data must be a Cifar10 from load_cifar10(). Received: data={type(data).__name__}")
    _validation.non_negative_int(seed, "seed")
    total = len(data.y_train)
    num_val = _validation_count(validation, total)
    if train_size is not None:
        _validation.positive_int(train_size, "train_size")
        if train_size > total - num_val:
            raise ValueError(
                f"train_size must be at most {total - num_val:,} (training images not held out for "
                f"validation). Received: train_size={train_size}"
            )

    pools = _class_pools(data.y_train, len(data.class_names), seed)
    sizes = np.array([len(p) for p in pools])
    val_quota = _allocate(num_val, sizes)
    rest = sizes - val_quota
    train_quota = rest if train_size is None else _allocate(train_size, rest)
    val_idx = np.sort(np.concatenate([p[:v] for p, v in zip(pools, val_quota)]))
    train_idx = np.sort(np.concatenate([p[v : v + t] for p, v, t in zip(pools, val_quota, train_quota)]))

    x_train, y_train = data.x_train[train_idx], data.y_train[train_idx]
    if validation == "test":
        x_val, y_val = data.x_test, data.y_test
        described = "the test set (as in the Keras tutorial; not held out)"
    else:
        x_val, y_val = data.x_train[val_idx], data.y_train[val_idx]
        described = f"stratified hold-out from the training set ({validation!r}, seed {seed})"
    return Splits(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=data.x_test,
        y_test=data.y_test,
        validation=described,
        class_names=data.class_names,
        source=data.source,
        seed=int(seed),
    )


def stratified_subset(y, size, seed):
    """Sorted indices of `size` entries of labels `y`, as evenly spread over classes as possible.

    The same rule as `make_splits`: each class's indices in one permutation drawn with
    `default_rng(seed)`; equal quotas, the remainder to the lowest labels, small classes
    giving all they have.
    """
    _validation.positive_int(size, "size")
    _validation.non_negative_int(seed, "seed")
    y = np.asarray(y)
    pools = _class_pools(y, int(y.max()) + 1 if len(y) else 0, seed)
    quota = _allocate(min(size, len(y)), np.array([len(p) for p in pools]))
    return np.sort(np.concatenate([p[:q] for p, q in zip(pools, quota)]))


def _class_pools(y, num_classes, seed):
    """One seeded permutation of the indices of each class, classes in label order."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(y == c)) for c in range(num_classes)]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _validation_count(validation, total):
    """How many training images `validation` holds out."""
    if validation == "test":
        return 0
    if _is_int(validation):
        if not 1 <= validation < total:
            raise ValueError(
                f"validation count must be in [1, {total}) (the training set size). "
                f"Received: validation={validation}"
            )
        return int(validation)
    if isinstance(validation, numbers.Real) and not isinstance(validation, bool):
        count = round(validation * total)
        if not (0 < validation < 1 and 1 <= count < total):
            raise ValueError(
                "validation fraction must be in (0, 1) and hold out at least one image. "
                f"Received: validation={validation}"
            )
        return count
    raise ValueError(
        f"validation must be 'test', a fraction in (0, 1) or a count. Received: validation={validation!r}"
    )


def _allocate(total, available):
    """Splits `total` over classes as evenly as `available` allows; ties go to low labels."""
    quota = np.zeros_like(available)
    remaining = total
    while remaining > 0:
        open_classes = np.flatnonzero(quota < available)
        share = remaining // len(open_classes)
        if share == 0:  # fewer left than open classes: one more each, lowest labels first
            quota[open_classes[:remaining]] += 1
            break
        add = np.minimum(share, available[open_classes] - quota[open_classes])
        quota[open_classes] += add
        remaining -= int(add.sum())
    return quota
