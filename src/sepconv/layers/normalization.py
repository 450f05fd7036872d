"""Batch normalization whose training step is one fused kernel where the backend has one.

A drop-in subclass of `keras.layers.BatchNormalization` (same arguments, config, weights
and results): in training it asks `sepconv.kernels.batch_norm_training` for the
normalized tensor and the batch statistics in one fused op (TensorFlow's
FusedBatchNormV3; on PyTorch a C kernel, else torch's batch_norm), then updates the moving statistics exactly as
Keras does. Keras' own composite (`moments`, then `batch_normalization`) makes about ten
passes over memory in training on TensorFlow and PyTorch, more than the depthwise and
pointwise convolutions around it. In inference, TensorFlow runs the fused op with the
moving statistics (`sepconv.kernels.batch_norm_inference`), which takes 16-bit inputs
as they are, and PyTorch on the CPU one pass of a C kernel. Masks, renormalization,
synchronized statistics, inference elsewhere and JAX (whose compiler fuses the
composite) take Keras' path. A ReLU that
follows can be asked for in the same call (`relu=True`, as `DepthwiseSeparableConv2D`
does): on PyTorch it is applied in place and its gradient fused with the normalization's.
"""

import keras

from sepconv import kernels


@keras.saving.register_keras_serializable(package="sepconv")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with fused training (and, on TensorFlow and PyTorch, inference) steps."""

    def call(self, inputs, training=None, mask=None, relu=False):
        """`relu=True` returns `relu(batch_norm(inputs))`, fused where the backend allows."""
        if mask is not None or self.renorm or self.synchronized:
            return self._keras_call(inputs, training, mask, relu)
        # 16-bit inputs (mixed precision) go to the fused op as they are, with float32
        # statistics and parameters: the op takes them, which saves a cast each way.
        stats_dtype = keras.backend.result_type(inputs.dtype, "float32")
        gamma = keras.ops.cast(self.gamma, stats_dtype) if self.scale else None
        beta = keras.ops.cast(self.beta, stats_dtype) if self.center else None
        if not (training and self.trainable):
            mean, variance = (keras.ops.cast(v, stats_dtype) for v in (self.moving_mean, self.moving_variance))
            outputs = kernels.batch_norm_inference(inputs, gamma, beta, mean, variance, self.axis, self.epsilon, relu)
            if outputs is None:
                return self._keras_call(inputs, training, mask, relu)
            return keras.ops.cast(outputs, self.compute_dtype)
        fused = kernels.batch_norm_training(inputs, gamma, beta, self.axis, self.epsilon, relu=relu)
        if fused is None:
            return self._keras_call(inputs, training, mask, relu)
        outputs, mean, variance = fused
        momentum = self.momentum
        self.moving_mean.assign(keras.ops.cast(self.moving_mean, stats_dtype) * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            keras.ops.cast(self.moving_variance, stats_dtype) * momentum + variance * (1.0 - momentum)
        )
        return keras.ops.cast(outputs, self.compute_dtype)

    def _keras_call(self, inputs, training, mask, relu):
        outputs = super().call(inputs, training=training, mask=mask)
        return keras.ops.relu(outputs) if relu else outputs
