"""A few epochs of training after conversion, with a plain `model.fit`.

Truncated ranks lose some of what the convolution computed; a short
fine-tune recovers much of it (Guo et al. 2018, arXiv:1808.05517, Sec. 4,
fine-tune the decoupled networks briefly). This is the smallest loop that
does it: Adam, sparse categorical cross-entropy, accuracy.
"""

import numbers

import keras

from sepconv import _validation

__all__ = ["finetune"]


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
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a positive number. Received: learning_rate={learning_rate!r}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=bool(from_logits)),
        metrics=["accuracy"],
    )
    # shuffle=False: a `Batches` already draws its own seeded order each epoch.
    history = model.fit(train, validation_data=validation, epochs=epochs, shuffle=False, verbose=verbose)
    return history.history
