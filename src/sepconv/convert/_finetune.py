"""A few epochs of training after conversion, with a plain `model.fit`.

Truncated ranks lose some of what the convolution computed; a short
fine-tune recovers much of it (Guo et al. 2018, arXiv:1808.05517, Sec. 4,
fine-tune the decoupled networks briefly). This is the smallest loop that
does it: Adam (its step constant, or decayed to zero on a cosine over the
whole fine-tune), accuracy, and as the loss either the labels' cross-entropy or
knowledge distillation from the original network (Hinton, Vinyals & Dean,
"Distilling the Knowledge in a Neural Network", 2015, arXiv:1503.02531):

    loss = (1 - label_weight) * T^2 * KL(softmax(t / T) || softmax(s / T))
           + label_weight * cross_entropy(labels, softmax(s))

with ``t``, ``s`` the teacher's and the student's logits (log-probabilities
when the models end in a softmax: the same up to a constant per sample) and
``T`` the temperature; ``T^2`` keeps the soft term's gradients on the scale of
the hard one's (Hinton et al., Sec. 2). With ``feature_weight`` the loss adds
that weight times the converted layers' relative output error against their
originals (`_features`). The teacher runs in inference mode inside the
training graph, on the same augmented batch as the student, and is never
updated.

With ``mixup`` both networks see each batch mixed with itself shifted by one,
``w * x + (1 - w) * roll(x)`` with ``w ~ Beta(mixup, mixup)`` drawn per batch,
and the labels' term becomes ``w * CE(y) + (1 - w) * CE(roll(y))``: "function
matching" (Beyer et al., "Knowledge distillation: A good teacher is patient and
consistent", CVPR 2022, arXiv:2106.05237). A teacher that fitted its training
images outputs almost one-hot targets on them; on mixed images its outputs say
more than the labels do.

With ``reparameterize`` the separable layers train with a BatchNorm after each
step, started on the calmest of the first training batches and folded into their
kernels afterwards (`_reparameterize`).

By default the student's BatchNorm layers stay in inference mode, their
statistics and scales frozen (`freeze_batch_norm`): reconstruction fitted each
layer with those statistics, and a short fine-tune in training mode replaces
them by a partial moving average of batch statistics (a teacher whose own
moving statistics lag its training, as after a few epochs, made the student
worse than before the fine-tune: docs/results/convert-reconstruct/).
"""

import contextlib

import keras
import numpy as np

from sepconv import _validation
from sepconv._schedules import warmup_cosine
from sepconv.convert._features import feature_loss, feature_pairs, with_features
from sepconv.convert._reparameterize import fold, with_batch_norm

__all__ = ["SCHEDULES", "cifar10_calibration", "distillation_loss", "finetune", "finetune_on_cifar10"]

SCHEDULES = ("constant", "cosine")
STATISTICS_IMAGES = 1024  # what `reparameterize`'s BatchNorms start on: 8 batches of 128
_EPSILON = 1e-7  # probabilities are clipped to [eps, 1] before the logarithm


def _log_probabilities(outputs, from_logits):
    if from_logits:
        return keras.ops.log_softmax(outputs, axis=-1)
    return keras.ops.log(keras.ops.clip(outputs, _EPSILON, 1.0))


def distillation_loss(classes, temperature, label_weight, from_logits):
    """`loss(labels, concat([student, teacher]))` of the module docstring, per sample.

    Outputs with one more column, `concat([student, teacher, w])`, come from a
    mixed batch (`_Distilled` with `mixup`): `w` is each row's weight on its own
    image, the rest on the previous row's.
    """

    def loss(labels, outputs):
        student = _log_probabilities(outputs[..., :classes], from_logits)
        teacher = _log_probabilities(outputs[..., classes : 2 * classes], from_logits)
        soft_teacher = keras.ops.softmax(teacher / temperature, axis=-1)
        soft_student = keras.ops.log_softmax(student / temperature, axis=-1)
        kl = keras.ops.sum(soft_teacher * (keras.ops.log(keras.ops.maximum(soft_teacher, 1e-30)) - soft_student), -1)
        total = (1.0 - label_weight) * temperature**2 * kl
        if label_weight > 0:
            labels = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(labels, (-1,)), "int32"), classes)
            if outputs.shape[-1] == 2 * classes + 1:
                weight = keras.ops.convert_to_tensor(outputs[..., 2 * classes :])
                labels = weight * labels + (1.0 - weight) * keras.ops.roll(labels, 1, axis=0)
            hard = -keras.ops.sum(labels * keras.ops.log_softmax(student, axis=-1), -1)
            total = total + label_weight * hard
        return total

    return loss


def _student_accuracy(classes):
    def accuracy(labels, outputs):
        return keras.metrics.sparse_categorical_accuracy(labels, outputs[..., :classes])

    return accuracy


@contextlib.contextmanager
def _frozen_batch_norm(model, frozen):
    """BatchNormalization layers of `model` not trainable (so in inference mode) while active."""
    layers = [layer for layer in model._flatten_layers(include_self=False) if frozen and
              isinstance(layer, keras.layers.BatchNormalization)]  # fmt: skip
    saved = [(layer, layer.trainable) for layer in layers]
    for layer in layers:
        layer.trainable = False
    try:
        yield
    finally:
        for layer, flag in saved:
            layer.trainable = flag


class _Distilled(keras.Model):
    """`concat([student(x), teacher(x)])`: the teacher in inference mode, never differentiated.

    With `feature_weight`, both run as `with_features` models (the same
    weights) and the feature term goes in with `add_loss`. With `mixup` > 0,
    training batches are mixed first (module docstring) and each row's weight
    `w` ends the output: `concat([student(x), teacher(x), w])`. Subclassed
    rather than Functional: a converted student keeps its teacher's name, and a
    Functional model refuses two nested models of the same name.
    """

    def __init__(self, student, teacher, feature_weight=0.0, mixup=0.0, seed=0):
        super().__init__(name=f"{student.name}_distilled")
        self.feature_weight, self.mixup = feature_weight, mixup
        if feature_weight:
            pairs = feature_pairs(student, teacher)
            student = with_features(student, [s for s, _ in pairs])
            teacher = with_features(teacher, [t for _, t in pairs])
        self.student, self.teacher = student, teacher
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        mixed = bool(training and self.mixup)
        if mixed:
            weight = keras.random.beta((), self.mixup, self.mixup, seed=self.seed_generator)
            inputs = weight * inputs + (1.0 - weight) * keras.ops.roll(inputs, 1, axis=0)
        target = keras.tree.map_structure(keras.ops.stop_gradient, self.teacher(inputs, training=False))
        output = self.student(inputs, training=training)
        if self.feature_weight:
            self.add_loss(self.feature_weight * feature_loss(output[1:], target[1:]))
            output, target = output[0], target[0]
        if mixed:
            return keras.ops.concatenate([output, target, keras.ops.ones_like(output[..., :1]) * weight], axis=-1)
        return keras.ops.concatenate([output, target], axis=-1)


def _optimizer(learning_rate, schedule, warmup, steps, clip_norm):
    """Adam at `learning_rate`, constant or decayed to 0 on a cosine over `steps` updates.

    With `warmup`, the first `warmup * steps` updates rise linearly from a tenth of
    `learning_rate` to it, as `sepconv train` warms up. With `clip_norm`, each update's
    gradients are scaled together to a global norm of at most `clip_norm`.
    """
    if schedule != "constant" or warmup:
        alpha = 1.0 if schedule == "constant" else 0.0  # 1: the cosine ends where it starts
        learning_rate = warmup_cosine(learning_rate, steps, round(warmup * steps), alpha)
    return keras.optimizers.Adam(learning_rate, global_clipnorm=clip_norm)


def _steps(train, epochs, schedule, warmup):
    if schedule == "constant" and not warmup:
        return None
    try:
        return epochs * len(train)
    except TypeError:
        setting = f"schedule='{schedule}'" if schedule != "constant" else f"warmup={warmup}"
        raise ValueError(
            f"{setting} needs `train` with a length (its batches per epoch). "
            f"Received: train of type {type(train).__name__}"
        ) from None


def finetune(model, train, validation=None, *, epochs=1, learning_rate=1e-4, from_logits=False, verbose="auto",
             teacher=None, temperature=4.0, label_weight=0.0, feature_weight=0.0, freeze_batch_norm=True,
             schedule="constant", warmup=0.0, mixup=0.0, reparameterize=False, clip_norm=None):  # fmt: skip
    """Trains `model` in place and returns the `fit` history as a dict.

    Args:
        model: a Keras classifier (e.g. the model `convert` returned).
        train: what `model.fit` accepts yielding `(images, integer labels)`,
            e.g. a `sepconv.data.Batches`.
        validation: the same kind of data for `validation_data`, or None.
        epochs: passes over `train`.
        learning_rate: Adam's step size; small, since training starts from
            trained weights.
        from_logits: False when the model ends in a softmax (sepconv's
            models do), True when it outputs logits.
        verbose: passed to `fit`.
        teacher: a model with the same inputs and outputs (the original,
            before conversion) to distill from; None trains on labels only.
        temperature: softens both output distributions, > 0.
        label_weight: in [0, 1], the labels' share of the loss (0: the
            teacher's outputs only; 1: labels only, as without a teacher).
        feature_weight: >= 0, adds this times the mean relative squared
            error of the converted layers' outputs against the teacher's
            (`_features`; needs `teacher`, and converted layers at the top
            level of `model`); 0: the outputs only.
        freeze_batch_norm: keep `model`'s BatchNormalization layers in
            inference mode, statistics and scales unchanged.
        schedule: one of `SCHEDULES`: "constant" keeps `learning_rate`;
            "cosine" decays it to 0 over all `epochs` (`train` must have
            a length).
        warmup: in [0, 1), the share of all updates over which the step
            rises linearly from `learning_rate / 10` to `learning_rate`
            (Adam's first updates move every weight by about the step,
            whatever its gradient; `train` must have a length).
        mixup: >= 0, the alpha of Beta(alpha, alpha) that draws each training
            batch's mixing weight (module docstring; needs `teacher`); 0: the
            batches as they come.
        reparameterize: train every top-level separable layer with a
            BatchNorm after its depthwise and its pointwise step, each
            starting as the identity: per channel, the statistics of the
            calmest of `train`'s first batches (`STATISTICS_IMAGES`
            images; `_reparameterize._statistics` says why), and fold them
            into its kernels and bias afterwards (`_reparameterize`): the
            model keeps its shape and parameter count. `train` must be a
            `keras.utils.PyDataset` or re-iterable (a `tf.data.Dataset`).
        clip_norm: None, or > 0: each update's gradients are scaled down
            together to a global norm of at most this (Adam's
            `global_clipnorm`). Adam divides each gradient by its running
            scale, so a `clip_norm` above the usual norms acts on outlier
            batches only, which could otherwise swell those averages.

    Returns:
        `{metric: [value per epoch]}` (`loss`, `accuracy`, and `val_*`).
    """
    epochs = _validation.positive_int(epochs, "epochs")
    _validation.number(learning_rate, "learning_rate", low=0.0, low_open=True)
    temperature = _validation.number(temperature, "temperature", low=0.0, low_open=True)
    label_weight = _validation.number(label_weight, "label_weight", low=0.0, high=1.0)
    feature_weight = _validation.number(feature_weight, "feature_weight", low=0.0)
    mixup = _validation.number(mixup, "mixup", low=0.0)
    for name, value in (("feature_weight", feature_weight), ("mixup", mixup)):
        if value and teacher is None:
            raise ValueError(f"{name} needs a teacher. Received: {name}={value}, teacher=None")
    schedule = _validation.choice(schedule, SCHEDULES, "schedule")
    warmup = _validation.number(warmup, "warmup", low=0.0, high=1.0, high_open=True)
    if clip_norm is not None:
        clip_norm = _validation.number(clip_norm, "clip_norm", low=0.0, low_open=True)
    optimizer = _optimizer(learning_rate, schedule, warmup, _steps(train, epochs, schedule, warmup), clip_norm)
    reparameterize = _validation.boolean(reparameterize, "reparameterize")
    with _frozen_batch_norm(model, _validation.boolean(freeze_batch_norm, "freeze_batch_norm")):
        # the normed copy shares every other layer with `model`, so those train in place (and stay frozen)
        trained, normed = (with_batch_norm(model, *_first_images(train)) if reparameterize else (model, None))
        history = _fit(trained, train, validation, epochs, optimizer, from_logits, verbose, teacher, temperature,
                       label_weight, feature_weight, mixup)  # fmt: skip
    if normed:
        fold(normed)
    return history


def _first_images(train, count=STATISTICS_IMAGES):
    """The images of `train`'s first batches, at least `count` of them (all, if it has fewer), and its batch size."""
    if isinstance(train, keras.utils.PyDataset):
        batches = (train[i] for i in range(len(train)))
    else:
        batches = iter(train)
        if batches is train:
            raise ValueError(
                "reparameterize reads the first batches of `train` before training, so `train` must be a "
                f"keras.utils.PyDataset or re-iterable. Received: train of type {type(train).__name__}"
            )
    images, seen = [], 0
    for batch in batches:
        images.append(keras.ops.convert_to_numpy(batch[0]))
        seen += len(images[-1])
        if seen >= count:
            break
    return np.concatenate(images), len(images[0])


def _fit(model, train, validation, epochs, optimizer, from_logits, verbose, teacher, temperature, label_weight,
         feature_weight, mixup):  # fmt: skip
    if teacher is not None and (label_weight < 1 or feature_weight or mixup):
        classes = int(model.outputs[0].shape[-1])
        trainable = [(layer, layer.trainable) for layer in teacher._flatten_layers(include_self=True)]
        teacher.trainable = False
        try:
            combined = _Distilled(model, teacher, feature_weight, mixup)
            combined.compile(
                optimizer=optimizer,
                loss=distillation_loss(classes, temperature, label_weight, bool(from_logits)),
                metrics=[_student_accuracy(classes)],
            )
            history = combined.fit(train, validation_data=validation, epochs=epochs, shuffle=False, verbose=verbose)
        finally:
            for layer, flag in trainable:
                layer.trainable = flag
        return history.history
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=bool(from_logits)),
        metrics=["accuracy"],
    )
    # shuffle=False: a `Batches` already draws its own seeded order each epoch.
    history = model.fit(train, validation_data=validation, epochs=epochs, shuffle=False, verbose=verbose)
    return history.history


def cifar10_image_format(model):
    """The data format of a model that takes CIFAR-10 images, from its input shape."""
    shape = tuple(model.inputs[0].shape[1:])
    if shape == (32, 32, 3):
        return "channels_last"
    if shape == (3, 32, 32):
        return "channels_first"
    raise ValueError(f"CIFAR-10 data needs a model taking 32x32x3 images. Received: input_shape={shape}")


def cifar10_calibration(source, size, model):
    """`size` CIFAR-10 *training* images, normalized as training normalizes them, drawn with seed 0.

    From the training set, never the test set that accuracy is measured on (reconstruction
    fits to these images; their labels are not used). Drawn at random because image-folder
    copies list the images class by class: the first ones would all be airplanes.
    """
    from sepconv.data import Batches, load_cifar10

    data = load_cifar10(source)
    rows = np.sort(np.random.default_rng(0).permutation(len(data.y_train))[:size])
    images = Batches(
        data.x_train[rows], data.y_train[rows], batch_size=size, shuffle=False, data_format=cifar10_image_format(model)
    )
    return images[0][0]


def _accuracy(model, data, from_logits):
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    return float(model.evaluate(data, verbose=0, return_dict=True)["accuracy"])


def finetune_on_cifar10(model, original, source, *, epochs=1, train_size=None, batch_size=128, learning_rate=1e-4,
                        from_logits=False, verbose="auto", temperature=4.0, label_weight=0.0, feature_weight=0.0,
                        freeze_batch_norm=True, schedule="constant", warmup=0.0, mixup=0.0,
                        reparameterize=False, seed=0, clip_norm=None):  # fmt: skip
    """Fine-tunes a converted `model` in place on CIFAR-10 and reports test accuracies.

    Trains on `train_size` stratified training images (all by default) with crop+flip
    augmentation, distilling from `original` (`temperature`, `label_weight`,
    `feature_weight`, `schedule`, `warmup`, `mixup`, `reparameterize`, `clip_norm`: see `finetune`;
    `label_weight=1` trains on labels only), and measures the test accuracy of `original`, of `model`
    before and after. `source` is a CIFAR-10 copy as `sepconv.data.load_cifar10` takes it. `seed`
    draws the subset, the order and the augmentation: runs that differ only in it show how much one
    epoch's outcome varies.

    Returns:
        A JSON-ready dict: epochs, train_images, validation, learning_rate,
        schedule, temperature, label_weight, feature_weight, mixup, reparameterize, seed, clip_norm,
        seconds (of training), accuracy {original, converted, finetuned} and the per-epoch history.
    """
    import time

    from sepconv.data import Batches, load_cifar10, make_splits

    _validation.positive_int(batch_size, "batch_size")
    seed = _validation.non_negative_int(seed, "seed")
    data_format = cifar10_image_format(model)
    splits = make_splits(load_cifar10(source), train_size=train_size, validation="test", seed=seed)
    train = Batches(
        splits.x_train, splits.y_train, batch_size=batch_size, augment=True, seed=seed, data_format=data_format
    )
    val = Batches(splits.x_val, splits.y_val, batch_size=256, shuffle=False, data_format=data_format)
    accuracy = {"original": _accuracy(original, val, from_logits), "converted": _accuracy(model, val, from_logits)}
    start = time.perf_counter()
    history = finetune(
        model, train, val, epochs=epochs, learning_rate=learning_rate, from_logits=from_logits, verbose=verbose,
        teacher=original, temperature=temperature, label_weight=label_weight, feature_weight=feature_weight,
        freeze_batch_norm=freeze_batch_norm, schedule=schedule, warmup=warmup, mixup=mixup,
        reparameterize=reparameterize, clip_norm=clip_norm,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    # the student's, also when distilling; reparameterized, scored again once folded: the model that is saved
    accuracy["finetuned"] = _accuracy(model, val, from_logits) if reparameterize else float(history["val_accuracy"][-1])
    return {
        "epochs": epochs,
        "train_images": len(splits.y_train),
        "validation": splits.validation,
        "learning_rate": learning_rate,
        "schedule": schedule,
        "warmup": warmup,
        "temperature": temperature,
        "label_weight": label_weight,
        "feature_weight": feature_weight,
        "mixup": mixup,
        "reparameterize": reparameterize,
        "seed": seed,
        "clip_norm": clip_norm,
        "freeze_batch_norm": freeze_batch_norm,
        "seconds": seconds,
        "accuracy": accuracy,
        "history": {key: [float(v) for v in values] for key, values in history.items()},
    }
