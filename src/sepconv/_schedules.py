"""The step-size schedule of training, distillation and quantization-aware fine-tuning."""

import keras


def warmup_cosine(learning_rate, steps, warmup_steps=0, alpha=0.0):
    """Keras' `CosineDecay`: over `warmup_steps` updates the step rises linearly from a
    tenth of `learning_rate` to it, then decays on a cosine to `alpha * learning_rate` at
    update `steps` (`alpha=1`: constant after the warmup).
    """
    return keras.optimizers.schedules.CosineDecay(
        learning_rate / 10 if warmup_steps else learning_rate,
        decay_steps=max(steps - warmup_steps, 1),
        alpha=alpha,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
