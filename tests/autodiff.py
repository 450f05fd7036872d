"""Gradients on the current Keras backend, for comparing against numpy references."""

import keras
import numpy as np

from helpers import BACKEND


def gradients(function, inputs, g):
    """Gradients of sum(function(*inputs) * g) with respect to `inputs`, on this backend."""
    if BACKEND == "jax":
        import jax

        # One compiled computation per case, as in a training step (and much faster than op by op).
        gradients = jax.jit(lambda inputs, g: jax.vjp(function, *inputs)[1](g))
        return [np.asarray(t) for t in gradients([keras.ops.convert_to_tensor(t) for t in inputs], g)]
    if BACKEND == "torch":
        import torch

        tensors = [keras.ops.convert_to_tensor(t).requires_grad_(True) for t in inputs]
        grads = torch.autograd.grad(function(*tensors), tensors, keras.ops.convert_to_tensor(g))
        return [t.detach().cpu().numpy() for t in grads]
    import tensorflow as tf

    tensors = [tf.constant(t) for t in inputs]
    with tf.GradientTape() as tape:
        for t in tensors:
            tape.watch(t)
        y = function(*tensors)
    return [t.numpy() for t in tape.gradient(y, tensors, output_gradients=tf.constant(g))]
