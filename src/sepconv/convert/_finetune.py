"""A few epochs of training after conversion, with a plain `model.fit`.

Truncated ranks lose some of what the convolution computed; a short
fine-tune recovers much of it (Guo et al. 2018, arXiv:1808.05517, Sec. 4,
fine-tune the decoupled networks briefly). This is the smallest loop that
does it: Adam, sparse categorical cross-entropy, accuracy.
"""

import keras

from sepconv import _validation

__all__ = ["cifar10_calibration", "finetune", "finetune_on_cifar10"]


def finetune(model, train, validation=None, *, epochs=1, learning_rate=1e-4, from_logits=False, verbose="auto"):
    """Trains `model` in place and returns the `fit` history as a dict.

    Args:
        model: a Keras classifier (e.g. the model `convert` returned).
        train: what `model.fit` accepts yielding `(images, integer labels)`,
            e.g. a `sepconv.data.Batches`.
        validation: the same kind of data for `validation_data`, or None.
        epochs: passes over `train`.
        learning_rate: Adam's step size; small, since training starts from
            trained weights.
        from_logits: False when the model ends in a softmax (sepconv's
            models do), True when it outputs logits.
        verbose: passed to `fit`.

    Returns:
        `{metric: [value per epoch]}` (`loss`, `accuracy`, and `val_*`).
    """
    epochs = _validation.positive_int(epochs, "epochs")
    _validation.number(learning_rate, "learning_rate", low=0.0, low_open=True)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=bool(from_logits)),
        metrics=["accuracy"],
    )
    # shuffle=False: a `Batches` already draws its own seeded order each epoch.
    history = model.fit(train, validation_data=validation, epochs=epochs, shuffle=False, verbose=verbose)
    return history.history


def cifar10_image_format(model):
    """The data format of a model that takes CIFAR-10 images, from its input shape."""
    shape = tuple(model.inputs[0].shape[1:])
    if shape == (32, 32, 3):
        return "channels_last"
    if shape == (3, 32, 32):
        return "channels_first"
    raise ValueError(f"CIFAR-10 data needs a model taking 32x32x3 images. Received: input_shape={shape}")


def cifar10_calibration(source, size, model):
    """`size` CIFAR-10 test images, normalized as training normalizes them, drawn with seed 0.

    Drawn at random because image-folder copies list the test set class by class: the
    first images would all be airplanes.
    """
    import numpy as np

    from sepconv.data import Batches, load_cifar10

    data = load_cifar10(source)
    rows = np.sort(np.random.default_rng(0).permutation(len(data.y_test))[:size])
    images = Batches(
        data.x_test[rows], data.y_test[rows], batch_size=size, shuffle=False, data_format=cifar10_image_format(model)
    )
    return images[0][0]


def _accuracy(model, data, from_logits):
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    return float(model.evaluate(data, verbose=0, return_dict=True)["accuracy"])


def finetune_on_cifar10(model, original, source, *, epochs=1, train_size=None, batch_size=128, learning_rate=1e-4,
                        from_logits=False, verbose="auto"):  # fmt: skip
    """Fine-tunes a converted `model` in place on CIFAR-10 and reports test accuracies.

    Trains on `train_size` stratified training images (all by default) with crop+flip
    augmentation, seed 0, and measures the test accuracy of `original`, of `model` before
    and after. `source` is a CIFAR-10 copy as `sepconv.data.load_cifar10` takes it.

    Returns:
        A JSON-ready dict: epochs, train_images, validation, learning_rate,
        accuracy {original, converted, finetuned} and the per-epoch history.
    """
    from sepconv.data import Batches, load_cifar10, make_splits

    _validation.positive_int(batch_size, "batch_size")
    data_format = cifar10_image_format(model)
    splits = make_splits(load_cifar10(source), train_size=train_size, validation="test", seed=0)
    train = Batches(
        splits.x_train, splits.y_train, batch_size=batch_size, augment=True, seed=0, data_format=data_format
    )
    val = Batches(splits.x_val, splits.y_val, batch_size=256, shuffle=False, data_format=data_format)
    accuracy = {"original": _accuracy(original, val, from_logits), "converted": _accuracy(model, val, from_logits)}
    history = finetune(
        model, train, val, epochs=epochs, learning_rate=learning_rate, from_logits=from_logits, verbose=verbose
    )
    accuracy["finetuned"] = float(history["val_accuracy"][-1])
    return {
        "epochs": epochs,
        "train_images": len(splits.y_train),
        "validation": splits.validation,
        "learning_rate": learning_rate,
        "accuracy": accuracy,
        "history": {key: [float(v) for v in values] for key, values in history.items()},
    }
