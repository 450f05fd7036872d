"""Compiled forward and forward+backward calls of a layer, per backend.

Compilation follows what `Model.fit` does by default (`jit_compile="auto"`):
JAX: `jax.jit`; TensorFlow: `tf.function`, with XLA only when a GPU is
present; PyTorch: eager. Forward calls run as inference (no autograd tape).
Forward+backward computes the gradients with respect to the input and
every trainable weight for a given output gradient `g`, in inference mode
unless `training=True` (batch statistics for normalization layers; their
moving averages are updated on TensorFlow and PyTorch, dropped on JAX).
"""

import inspect

import keras


def _tf_jit_compile():
    import tensorflow as tf

    return any(device.device_type != "CPU" for device in tf.config.list_physical_devices())


def compile_function(function):
    """`function(*tensors)` compiled the way Keras compiles a train step."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=_tf_jit_compile(), reduce_retracing=True)
    return function


def forward(layer, x):
    """A zero-argument callable running `layer(x)` in inference mode."""
    backend = keras.backend.backend()
    if backend == "jax":
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        step = compile_function(lambda t, n, x: layer.stateless_call(t, n, x)[0])
        return lambda: step(trainable, non_trainable, x)
    if backend == "torch":
        import torch

        def step():
            with torch.no_grad():
                return layer(x)

        return step
    step = compile_function(lambda x: layer(x))
    return lambda: step(x)


def forward_backward(layer, x, g, training=False):
    """A zero-argument callable returning d(layer(x, training))/d(x, weights) applied to `g`: [dx, *dweights]."""
    backend = keras.backend.backend()
    # JAX's `stateless_call` hands `training` to `call` as is, so only layers whose `call` takes it get it.
    mode = {"training": True} if training and "training" in inspect.signature(layer.call).parameters else {}
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def gradients(t, n, x, g):
            _, pullback = jax.vjp(lambda t, x: layer.stateless_call(t, n, x, **mode)[0], t, x)
            weight_gradients, x_gradient = pullback(g)
            return [x_gradient, *weight_gradients]  # the order the other backends give

        step = compile_function(gradients)
        return lambda: step(trainable, non_trainable, x, g)
    if backend == "torch":
        import torch

        x = x.detach().requires_grad_(True)
        weights = [v.value for v in layer.trainable_variables]
        return lambda: torch.autograd.grad(layer(x, **mode), [x, *weights], g)
    import tensorflow as tf

    def gradients(x, g):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, **mode)
        return tape.gradient(y, [x, *layer.trainable_variables], output_gradients=g)

    step = compile_function(gradients)
    return lambda: step(x, g)


def copy(x):
    """A zero-argument callable reading `x` once and writing a tensor of its size."""
    step = compile_function(lambda x: keras.ops.negative(x))
    return lambda: step(x)


def matmul(a, b):
    step = compile_function(lambda a, b: keras.ops.matmul(a, b))
    return lambda: step(a, b)


def gradient(function, inputs, g):
    """A zero-argument callable returning d(function(*inputs))/d(inputs) applied to `g`."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        step = compile_function(lambda inputs, g: jax.vjp(function, *inputs)[1](g))
        return lambda: step(list(inputs), g)
    if backend == "torch":
        import torch

        inputs = [t.detach().requires_grad_(True) for t in inputs]
        return lambda: torch.autograd.grad(function(*inputs), inputs, g)
    import tensorflow as tf

    def gradients(inputs, g):
        with tf.GradientTape() as tape:
            for t in inputs:
                tape.watch(t)
            y = function(*inputs)
        return tape.gradient(y, inputs, output_gradients=g)

    step = compile_function(gradients)
    return lambda: step(list(inputs), g)
