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
    """TensorFlow's depthwise convolution, with faster gradients for some calls on the CPU.

    - oneDNN's bfloat16/float16 depthwise *gradient* kernels are slow unless the call is 3x3
      (or smaller) at stride 1: 5-14x slower than float32 for a 3x3, stride-2 layer of
      `dsc_resnet10`, 3-5x for 4x4, 5x5 and 7x7 kernels at stride 1 (forward and backward,
      batch 128, bfloat16, this repo's CPU). So those calls keep the forward in 16 bits and
      take the float32 gradient, rounded back: two casts instead of the slow kernels. A 3x3
      stride-1 call keeps the 16-bit op, 1.1-1.5x faster than the float32 one.
    - The kernel gradient of a stride-1 call with a kernel above 3x3 is several times slower
      per tap than a 3x3 one, so it is computed in 3x3 blocks (`_kernel_gradient_by_blocks`).
    Measured on CPUs only, so machines with a GPU keep the plain op.
    """
    args = (tuple(strides), padding, data_format, tuple(dilation_rate))
    if not _dispatch._default_device_is_cpu():
        return _portable.depthwise_native(x, kernel, *args)
    blocks = _blocks_apply(x, kernel, args)
    slow_16_bit = x.dtype in (tf.bfloat16, tf.float16) and (max(args[0]) > 1 or max(kernel.shape[:-2]) > 3)
    if slow_16_bit or blocks:
        # Read (auto-cast) variables here: the custom gradient must see tensors, not variables.
        return _float32_gradient(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel), args, blocks)
    return _portable.depthwise_native(x, kernel, *args)


def _blocks_apply(x, kernel, args):
    """Whether `_kernel_gradient_by_blocks` computes this call's kernel gradient."""
    strides, _, data_format, dilation_rate = args
    spatial = x.shape[1:3]
    return (
        len(strides) == 2
        and max(strides) == 1
        and max(dilation_rate) == 1
        and data_format == "channels_last"
        and max(kernel.shape[:2]) > 3
        and None not in spatial
    )


def _float32_gradient(x, kernel, args, blocks):
    """The op on `x` as it is; its gradient in float32 (by 3x3 blocks of the kernel if `blocks`)."""

    @tf.custom_gradient
    def depthwise(x, kernel):
        def gradient(upstream):
            wide = tf.cast(x, tf.float32), tf.cast(kernel, tf.float32)
            upstream = tf.cast(upstream, tf.float32)
            if blocks:  # the input gradient alone: a tape would also run the slow kernel gradient
                dx = tf.compat.v1.nn.depthwise_conv2d_native_backprop_input(
                    tf.shape(x), wide[1], upstream, [1, 1, 1, 1], args[1].upper()
                )
                dkernel = _kernel_gradient_by_blocks(wide[0], upstream, tuple(kernel.shape), args[1])
            else:
                with tf.GradientTape() as tape:  # the float32 forward is unused, so tf.function prunes it
                    tape.watch(wide)
                    y = _portable.depthwise_native(*wide, *args)
                dx, dkernel = tape.gradient(y, wide, output_gradients=upstream)
            return tf.cast(dx, x.dtype), tf.cast(dkernel, kernel.dtype)

        return _portable.depthwise_native(x, kernel, *args), gradient

    return depthwise(x, kernel)


def _kernel_gradient_by_blocks(x, upstream, kernel_shape, padding):
    """The kernel gradient of a stride-1, channels_last 2-D depthwise call, as 3x3 blocks.

    oneDNN's kernel gradient is fast for 3x3 kernels only: a 5x5 one takes 14x a 3x3's time
    for 2.8x the taps (32x32x48, batch 128, float32, this repo's CPU). A kernel zero-padded to
    a multiple of 3 on each side is a grid of 3x3 blocks; block (a, b) sees the padded input
    shifted by (3a, 3b), so its gradient is a 3x3 "valid" kernel gradient over that window.
    The grid's taps beyond the kernel are cut off. 1.4-1.9x faster for 5x5 kernels.
    """
    rows, columns, channels, multiplier = kernel_shape
    height, width = x.shape[1], x.shape[2]
    out_height, out_width = (height, width) if padding == "same" else (height - rows + 1, width - columns + 1)
    grid = -(-rows // 3), -(-columns // 3)
    top, left = ((rows - 1) // 2, (columns - 1) // 2) if padding == "same" else (0, 0)
    # Block (a, b) reads rows 3a .. 3a + out_height + 1 of the padded input.
    bottom = 3 * grid[0] - 1 + out_height - top - height
    right = 3 * grid[1] - 1 + out_width - left - width
    padded = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
    block_rows = []
    for a in range(grid[0]):
        blocks = []
        for b in range(grid[1]):
            window = padded[:, 3 * a : 3 * a + out_height + 2, 3 * b : 3 * b + out_width + 2, :]
            blocks.append(
                tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter(
                    window, [3, 3, channels, multiplier], upstream, [1, 1, 1, 1], "VALID"
                )
            )
        block_rows.append(tf.concat(blocks, axis=1))
    return tf.concat(block_rows, axis=0)[:rows, :columns]
