"""Max pooling layers that keep PyTorch tensors in their channels_last layout.

Drop-in subclasses of Keras' `MaxPooling1D/2D/3D` (same arguments, config
and results); only the compute goes through `sepconv.kernels.max_pool`. On
PyTorch this removes two layout copies per pooling layer and lets the
activation before it run its gradient on matching layouts: the
regular-vs-separable VGG comparison spends a large share of a separable
step there (see `sepconv bench`). Other backends run Keras' own op.
"""

import keras

from sepconv import kernels


class _MaxPoolingMixin:
    def call(self, inputs):
        return kernels.max_pool(inputs, self.pool_size, self.strides, self.padding, self.data_format)


@keras.saving.register_keras_serializable(package="sepconv")
class MaxPooling1D(_MaxPoolingMixin, keras.layers.MaxPooling1D):
    """`keras.layers.MaxPooling1D` computed by `sepconv.kernels.max_pool`."""


@keras.saving.register_keras_serializable(package="sepconv")
class MaxPooling2D(_MaxPoolingMixin, keras.layers.MaxPooling2D):
    """`keras.layers.MaxPooling2D` computed by `sepconv.kernels.max_pool`."""


@keras.saving.register_keras_serializable(package="sepconv")
class MaxPooling3D(_MaxPoolingMixin, keras.layers.MaxPooling3D):
    """`keras.layers.MaxPooling3D` computed by `sepconv.kernels.max_pool`."""
