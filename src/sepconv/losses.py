"""Losses that `.keras` files of sepconv runs name; registered with Keras on `import sepconv`."""

import keras


@keras.saving.register_keras_serializable(package="sepconv")
class SparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels (or of targets, e.g. mixup's) and predicted probabilities,
    with label smoothing.

    Targets with one entry per class `(n, classes)` are taken as they are, then smoothed;
    the target of integer label `y` is `(1 - label_smoothing) * one_hot(y) + label_smoothing / K`
    for `K` classes (Szegedy et al. 2016, arXiv:1512.00567, Sec. 7), as in
    `keras.losses.CategoricalCrossentropy(label_smoothing=...)`, which needs one-hot labels.
    """

    def __init__(self, label_smoothing=0.0, name="sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        if per_class_targets(y_true, y_pred):
            targets = keras.ops.cast(y_true, y_pred.dtype)
            return keras.losses.categorical_crossentropy(targets, y_pred, label_smoothing=self.label_smoothing)
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        one_hot = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def per_class_targets(y_true, y_pred):
    """Whether `y_true` holds one target per class `(n, classes)` (e.g. mixup's) rather than integer labels."""
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] != 1
