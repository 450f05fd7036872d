"""Scoring a run's saved models once training is over: the test set or the run's own validation images.

A run that held out part of its training images picks its settings on them; the test set is then
read once, at the end, by `evaluate_run(folder, split="test")`.
"""

import os

import keras

import sepconv.layers  # noqa: F401  (registers sepconv's layers for loading)
from sepconv import _provenance, _validation
from sepconv import _run_folder as layout
from sepconv._options import one_of
from sepconv.data import Batches, load_cifar10
from sepconv.training._config import TrainConfig
from sepconv.training._experiment import check_same_data, run_splits
from sepconv.training._loop import tta_accuracy

SPLITS = ("test", "validation")
CHECKPOINTS = ("final", "best")
_FILES = {"final": layout.FINAL, "best": layout.BEST}
BATCH_SIZE = 500  # images per prediction batch: the views of 500 CIFAR-10 images fit in any memory here


def view_names(tta_shift):
    """The accuracies `evaluate_run` reports: the plain image, with its mirror, with diagonally shifted views too."""
    return ["plain", "flip"] + ([f"flip+diag{tta_shift}"] if tta_shift else [])


def evaluate_model(model, x, y, *, tta_shift=1, batch_size=BATCH_SIZE):
    """{view name: accuracy} of a Keras classifier on uint8 images `x` with integer labels `y`,
    standardized as training standardizes them (`sepconv.data.Batches`); views as in `evaluate_run`."""
    tta_shift = _validation.non_negative_int(tta_shift, "tta_shift")
    batches = Batches(x, y, batch_size=_validation.positive_int(batch_size, "batch_size"), shuffle=False)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    plain = float(model.evaluate(batches, verbose=0, return_dict=True)["accuracy"])
    views = [plain, tta_accuracy(model, batches)] + ([tta_accuracy(model, batches, tta_shift)] if tta_shift else [])
    return dict(zip(view_names(tta_shift), views, strict=True))


def evaluate_run(folder, *, split="test", checkpoint="final", tta_shift=1, data=None, batch_size=BATCH_SIZE,
                 quiet=True):  # fmt: skip
    """Accuracy of each model of the run in `folder`, plain and with test-time augmentation.

    Args:
        folder: a run folder (`sepconv train`/`compare`); each model's checkpoint must be there.
        split: "test", the dataset's test images, all of them; or "validation", the images the
            run validated on (its held-out training images, or its share of the test set), which
            must be the same arrays as in the run (checked against its data fingerprint).
        checkpoint: "final" (the last epoch's weights, or their average with weight EMA) or
            "best" (the epoch with the best validation accuracy).
        tta_shift: 0 scores the plain image and its mirror; N > 0 also the mirrors of the views
            moved diagonally by N pixels (`sepconv.training._loop.tta_views`).
        data: a `sepconv.data.Cifar10`, a path to a CIFAR-10 copy, or None for the copy the run
            names (else `$SEPCONV_DATA`, else keras.datasets).
        batch_size: images per prediction batch.
        quiet: no progress bar while the data decode.

    Returns:
        A dict: `folder`, `split` (a description), `images`, `source`, `fingerprint` (of the
        run's data), `checkpoint`, `tta_shift`, `batch_size`, `models` (model name -> {view
        name: accuracy}, `view_names(tta_shift)`) and `environment` (backend, versions, commit).
    """
    split = one_of(SPLITS)(split, "split")
    checkpoint = one_of(CHECKPOINTS)(checkpoint, "checkpoint")
    tta_shift = _validation.non_negative_int(tta_shift, "tta_shift")
    batch_size = _validation.positive_int(batch_size, "batch_size")
    record_path = os.path.join(folder, layout.CONFIG)
    if not os.path.isfile(record_path):
        raise FileNotFoundError(f"folder must be a run folder holding {layout.CONFIG}. Received: folder={folder!r}")
    record = layout.read_json(record_path)
    paths = {name: os.path.join(folder, name, _FILES[checkpoint]) for name in record["models"]}
    missing = [name for name, path in paths.items() if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"no {_FILES[checkpoint]} for {', '.join(missing)} (an unfinished run: finish it with `sepconv train "
            f"--resume`{'' if checkpoint == 'best' else ', or score best.keras: --checkpoint best'}). "
            f"Received: folder={folder!r}"
        )
    if isinstance(data, str):  # decoded only once the folder has passed its checks
        data = load_cifar10(data, progress=not quiet)
    splits = run_splits(TrainConfig.from_dict(record["config"]), data, quiet)
    if split == "validation":
        check_same_data(record, splits, f"data={splits.source!r}")
        x, y, description = splits.x_val, splits.y_val, splits.validation
    else:
        x, y, description = splits.x_test, splits.y_test, "the dataset's test set"
    scores = {
        name: evaluate_model(keras.saving.load_model(path, compile=False), x, y, tta_shift=tta_shift,
                             batch_size=batch_size)  # fmt: skip
        for name, path in paths.items()
    }
    return {
        "folder": folder,
        "split": description,
        "images": len(y),
        "source": splits.source,
        "fingerprint": record["data"]["fingerprint"],
        "checkpoint": _FILES[checkpoint],
        "tta_shift": tta_shift,
        "batch_size": batch_size,
        "models": scores,
        "environment": _provenance.environment(),
    }
