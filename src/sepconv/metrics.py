"""Metrics that `.keras` files of sepconv runs name; registered with Keras on `import sepconv`."""

import keras

from sepconv.losses import per_class_targets


@keras.saving.register_keras_serializable(package="sepconv")
class Accuracy(keras.metrics.MeanMetricWrapper):
    """Share of images whose top prediction is their label.

    Takes integer labels `(n,)`, as `keras.metrics.SparseCategoricalAccuracy`, or targets
    with one entry per class `(n, classes)`, e.g. mixup's, whose largest entry is the label.
    """

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(fn=_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _accuracy(y_true, y_pred):
    if per_class_targets(y_true, y_pred):
        y_true = keras.ops.argmax(y_true, axis=-1)
    return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)
