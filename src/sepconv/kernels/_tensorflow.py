"""TensorFlow paths behind the selection point."""

import tensorflow as tf

from sepconv.kernels import _dispatch, _portable


def batch_norm_training(x, gamma, beta, axis, epsilon):
    """Training-mode batch normalization of a 4-D tensor as one fused op, or None.

    `tf.compat.v1.nn.fused_batch_norm` (FusedBatchNormV3, oneDNN on CPU) computes the
    statistics and the normalization in one op, and its gradient in one more, where the
    composite `tf.nn.moments` + `tf.nn.batch_normalization` runs about ten elementwise
    and reduction passes. Returns `(y, mean, variance)` with the biased (population)
    variance, as `keras.ops.moments` gives it; None where the op does not apply.
    """
    params = _fused_parameters(x, gamma, beta, axis)
    if params is None:
        return None
    scale, offset, data_format = params
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x, scale, offset, epsilon=epsilon, data_format=data_format, is_training=True
    )
    # The op returns the Bessel-corrected variance in training; Keras tracks the biased one.
    count = tf.cast(tf.size(x) // tf.shape(x)[axis % 4], variance.dtype)
    variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
    return y, mean, variance


def batch_norm_inference(x, gamma, beta, mean, variance, axis, epsilon):
    """Inference-mode FusedBatchNormV3 with the given statistics, or None where it does not apply."""
    params = _fused_parameters(x, gamma, beta, axis)
    if params is None:
        return None
    scale, offset, data_format = params
    statistics = dict(mean=tf.cast(mean, tf.float32), variance=tf.cast(variance, tf.float32))
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(
        x, scale, offset, **statistics, epsilon=epsilon, data_format=data_format, is_training=False
    )
    return y


def _fused_parameters(x, gamma, beta, axis):
    """(scale, offset, data_format) for the fused op on `x`, or None where it does not apply.

    The op takes 4-D float32 or 16-bit `x` (normalized in its own dtype) with float32
    statistics, scale and offset.
    """
    rank = len(x.shape)
    axis = axis % rank
    if rank != 4 or axis not in (1, 3) or x.dtype not in (tf.float32, tf.bfloat16, tf.float16):
        return None
    channels = x.shape[axis]
    scale = tf.ones((channels,), tf.float32) if gamma is None else tf.cast(gamma, tf.float32)
    offset = tf.zeros((channels,), tf.float32) if beta is None else tf.cast(beta, tf.float32)
    return scale, offset, "NHWC" if axis == 3 else "NCHW"


def depthwise_native(x, kernel, strides, padding, data_format, dilation_rate):
    """TensorFlow's depthwise convolution; some 16-bit calls take their gradient in float32.

    oneDNN's bfloat16/float16 depthwise *gradient* kernels are slow unless the call is 3x3 (or
    smaller) at stride 1: 5-14x slower than float32 for a 3x3, stride-2 layer of `dsc_resnet10`,
    3-5x for 4x4, 5x5 and 7x7 kernels at stride 1 (forward and backward, batch 128, bfloat16,
    this repo's CPU). So those calls keep the forward in 16 bits and take the float32 op's
    gradient, rounded back: two casts instead of the slow kernels. A 3x3 stride-1 call keeps the
    16-bit op, 1.1-1.5x faster than the float32 one. Measured on CPUs only, so machines with a
    GPU keep the plain op.
    """
    args = (tuple(strides), padding, data_format, tuple(dilation_rate))
    fast_16_bit = max(args[0]) == 1 and max(kernel.shape[:-2]) <= 3
    if x.dtype not in (tf.bfloat16, tf.float16) or fast_16_bit or not _dispatch._default_device_is_cpu():
        return _portable.depthwise_native(x, kernel, *args)
    # Read (auto-cast) variables here: the custom gradient must see tensors, not variables.
    return _float32_gradient(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel), args)


def _float32_gradient(x, kernel, args):
    @tf.custom_gradient
    def depthwise(x, kernel):
        def gradient(upstream):
            wide = tf.cast(x, tf.float32), tf.cast(kernel, tf.float32)
            with tf.GradientTape() as tape:  # the float32 forward is unused, so tf.function prunes it
                tape.watch(wide)
                y = _portable.depthwise_native(*wide, *args)
            dx, dkernel = tape.gradient(y, wide, output_gradients=tf.cast(upstream, tf.float32))
            return tf.cast(dx, x.dtype), tf.cast(dkernel, kernel.dtype)

        return _portable.depthwise_native(x, kernel, *args), gradient

    return depthwise(x, kernel)
