"""TensorFlow paths behind the selection point."""

import tensorflow as tf


def batch_norm_training(x, gamma, beta, axis, epsilon):
    """Training-mode batch normalization of a 4-D tensor as one fused op, or None.

    `tf.compat.v1.nn.fused_batch_norm` (FusedBatchNormV3, oneDNN on CPU) computes the
    statistics and the normalization in one op, and its gradient in one more, where the
    composite `tf.nn.moments` + `tf.nn.batch_normalization` runs about ten elementwise
    and reduction passes. Returns `(y, mean, variance)` with the biased (population)
    variance, as `keras.ops.moments` gives it; None where the op does not apply.
    """
    rank = len(x.shape)
    axis = axis % rank
    if rank != 4 or axis not in (1, 3) or x.dtype != tf.float32:
        return None
    channels = x.shape[axis]
    gamma = tf.ones((channels,), x.dtype) if gamma is None else gamma
    beta = tf.zeros((channels,), x.dtype) if beta is None else beta
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, epsilon=epsilon, data_format="NHWC" if axis == 3 else "NCHW", is_training=True
    )
    # The op returns the Bessel-corrected variance in training; Keras tracks the biased one.
    shape = tf.shape(x)
    count = tf.cast(tf.size(x) // shape[axis], x.dtype)
    variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
    return y, mean, variance
