"""Training one model with `model.fit`: optimizer, loss, callbacks, checkpoint and resume."""

import dataclasses
import gc
import itertools
import os

import keras

from sepconv._atomic import save_model
from sepconv import _run_folder as layout
from sepconv._schedules import warmup_cosine
from sepconv.losses import SparseCrossentropy
from sepconv.metrics import Accuracy
from sepconv.training._callbacks import Checkpoint, DataEpoch, EpochLog, TimeBudget, WeightAverage
from sepconv.training._distribution import SINGLE
from sepconv.training._epoch_display import EpochLines, RichProgress


def make_optimizer(config, steps_per_epoch):
    lr = config.lr
    if config.schedule == "cosine":
        warmup = round(config.warmup_epochs * steps_per_epoch)
        lr = warmup_cosine(config.lr, config.epochs * steps_per_epoch, warmup)
    decay = config.weight_decay or None
    # The average never replaces the weights being trained (`ema_overwrite_frequency` unset):
    # `WeightAverage` swaps it in to validate and save, and `fit` writes it in at its end.
    ema = dict(use_ema=True, ema_momentum=config.ema_momentum) if config.ema_momentum else {}
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(lr, weight_decay=decay, **ema)
    elif config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay, **ema)
    else:
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=True, weight_decay=decay, **ema)
    exclude_from_decay(optimizer, config)
    return optimizer


# Variable names (Keras' and sepconv's layers) of each `TrainConfig.no_decay` kind.
NO_DECAY_NAMES = {"norm": ("gamma", "beta"), "bias": ("bias", "depthwise_bias"), "depthwise": ("depthwise_kernel",)}


def exclude_from_decay(optimizer, config):
    """Tells `optimizer` which weights weight decay leaves alone (`config.no_decay`).

    Keras keeps the exclusions out of a saved optimizer's config, so a resumed run sets
    them again on the loaded, already built optimizer; Keras reads them at every step
    and only refuses them once built to keep users from changing them mid-run.
    """
    names = [name for kind in config.no_decay if kind != "none" for name in NO_DECAY_NAMES[kind]]
    if not names:
        return
    built, optimizer.built = optimizer.built, False
    # Keras matches `variable.name`; TensorFlow's optimizer sees the tf.Variable, named "path/name:0".
    optimizer.exclude_from_weight_decay(var_names=[rf"(?:^|/){name}(?::\d+)?$" for name in names])
    optimizer.built = built


def make_loss(config):
    if config.label_smoothing or config.mixup:  # mixup's targets need the loss that takes them
        return SparseCrossentropy(label_smoothing=config.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def build_model(name, config, input_shape, num_classes, steps_per_epoch):
    """`create_model(name)` compiled with the run's optimizer, loss and accuracy metric."""
    from sepconv.models import create_model

    keras.utils.set_random_seed(config.seed)  # same initial weights for the same model and seed
    model = create_model(
        name, input_shape=input_shape, num_classes=num_classes, dtype_policy=config.dtype_policy, **config.model_kwargs
    )
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=make_loss(config),
        metrics=[Accuracy()],  # of integer labels, or mixup's targets
    )
    return model


def training_batches(splits, config, placement=SINGLE):
    """The training data of a run: shuffled per epoch, augmented as `config` says.

    Under a distribution, this process's share of each global batch (`Placement.batches`).
    """
    return placement.batches(
        splits.x_train,
        splits.y_train,
        batch_size=config.batch_size,
        augment=config.augment,
        trivial_augment=config.trivial_augment,
        cutout=config.cutout,
        mixup=config.mixup,
        num_classes=len(splits.class_names),
        seed=config.seed,
    )


def fit_input(batches):
    """What `fit` reads a `Batches` through: on TensorFlow its native `tf.data` pipeline.

    `Batches.tf_dataset()` gives the same batches with the pixel work in TensorFlow ops;
    fed as a `PyDataset`, TensorFlow runs the numpy work in a prefetch thread holding
    Python's GIL, measured 5-7% slower than the step with augmentation (`sepconv bench fit`).
    The other backends read the `PyDataset` between steps.
    """
    return batches.tf_dataset() if keras.backend.backend() == "tensorflow" else batches


def model_costs(model):
    """`(params, MACs per image)` with `sepconv.analysis.profile_model`'s conventions."""
    from sepconv.analysis import profile_model

    profile = profile_model(model)
    return profile.params, profile.macs


def fit_model(name, splits, config, folder, *, quiet=False, label=None, on_saved=None, test_data=True,
              placement=SINGLE, budget=None):  # fmt: skip
    """Trains model `name` in `folder`, continuing from its `state.json` when there is one.

    Returns the final state (see `Checkpoint`), with `finished=True`. `test_data=False`
    skips the test-set evaluation (used when validation images come from the test set).
    `placement` (`sepconv.training._distribution`): every process trains, only its
    `writer` (process 0) writes files. `budget`: `budget_epochs`' answer for a model that
    `config.time_budget` has not sized yet.
    """
    state_path = os.path.join(folder, layout.STATE)
    state = layout.read_json(state_path) if os.path.exists(state_path) else {"model": name, "finished": False}
    if placement.writer:
        os.makedirs(folder, exist_ok=True)
        layout.remove_temporaries(folder)
        _remove_stale_checkpoints(folder, keep=state.get("checkpoint"))
    if state["finished"]:
        return state

    train = training_batches(splits, config, placement)
    val = placement.batches(splits.x_val, splits.y_val, batch_size=config.batch_size, shuffle=False)
    done = state.get("epochs_done", 0)
    if budget is not None:  # measured for a model the time budget has not sized yet (`_experiment._budgets`)
        state["epochs"], state["budget_step_s"] = budget
    if "epochs" in state:  # set by the time budget when the run started; a resume keeps it
        config = dataclasses.replace(config, epochs=state["epochs"])
    if done:  # weights and optimizer state (step count, moments) come from the checkpoint
        # The schedule and the weight average count steps: an epoch must keep its steps.
        if len(train) != state.get("steps_per_epoch", len(train)):
            raise ValueError(
                f"{name} took {state['steps_per_epoch']} steps per epoch and would take {len(train)} on "
                f"{placement.devices} device(s) (the last partial batch is cut to a multiple of the device count); "
                f"resume on as many devices as it started with. Received: devices={placement.devices}"
            )
        model = placement.load_model(os.path.join(folder, state["checkpoint"]), config.seed)
        exclude_from_decay(model.optimizer, config)
    else:
        model = build_model(name, config, splits.x_train.shape[1:], len(splits.class_names), len(train))
        state["params"], state["macs"] = model_costs(model)
        state["steps_per_epoch"] = len(train)

    label = label or name
    images = getattr(train, "images_per_epoch", len(splits.y_train))  # all processes together
    log = EpochLog(name, images, rows=state.get("history", ()))
    display = EpochLines(label, log, config.epochs) if quiet else RichProgress(label, log, config.epochs, done)
    average = WeightAverage() if config.ema_momentum else None
    checkpoint = Checkpoint(folder, log, state, on_saved, writer=placement.writer, saving=placement.saving,
                            average=average)  # fmt: skip
    callbacks = [DataEpoch(train), log, checkpoint, display] + ([average] if average else [])
    if config.time_budget:  # before the checkpoint, which saves the plan with the epoch
        epoch_s = state["budget_step_s"] * len(train) if "budget_step_s" in state else None
        callbacks.insert(2, TimeBudget(config.time_budget, state, len(train), epoch_s, display.set_epochs))
    try:
        model.fit(
            fit_input(train),
            validation_data=val,
            epochs=config.epochs,
            initial_epoch=done,
            shuffle=False,  # Batches orders the data itself; fit would reorder whole batches
            callbacks=callbacks,
            verbose=0,
        )
    finally:
        display.close()

    last = os.path.join(folder, state["checkpoint"])
    if placement.writer and average is None:
        layout.copy_file(last, os.path.join(folder, layout.FINAL))
    elif placement.writer:  # `fit` ends by writing the average into the model; the checkpoint has the raw weights
        with placement.saving():
            save_model(model, os.path.join(folder, layout.FINAL))
    if test_data:
        placement.barrier(f"{name}: best.keras written")  # every process evaluates process 0's file
        best = placement.load_model(os.path.join(folder, layout.BEST), config.seed)
        test = placement.batches(splits.x_test, splits.y_test, batch_size=config.batch_size, shuffle=False)
        state["test_accuracy"] = float(best.evaluate(test, verbose=0, return_dict=True)["accuracy"])
        if config.tta:
            state["test_accuracy_tta"] = tta_accuracy(best, test, config.tta_shift)
    state.update(finished=True, checkpoint=layout.FINAL)
    if placement.writer:
        layout.write_json(state_path, state)
        os.remove(last)
    return state


def budget_epochs(name, config, splits, train):
    """`(epochs, step_s)`: how many epochs of `name` fit in `config.time_budget` minutes here.

    An epoch costs `len(train) * step_s`, the quantity the history's `epoch_time_s`
    measures, with `step_s` timed on a throwaway copy of the model built and compiled
    as the run's (`measure_step_s`).
    """
    probe = build_model(name, config, splits.x_train.shape[1:], len(splits.class_names), len(train))
    step_s = measure_step_s(probe, train)
    del probe
    gc.collect()  # a Keras model holds reference cycles: free its weights and compiled step now
    epoch_s = len(train) * step_s
    epochs = int(config.time_budget * 60 // epoch_s)
    least = int(config.warmup_epochs) + 1 if config.schedule == "cosine" else 1
    if epochs < least:
        raise ValueError(
            f"time_budget fits {epochs} epoch(s) of {name} here (one takes {epoch_s:.1f} s) and the run needs at "
            f"least {least}; give more minutes or fewer training images. Received: time_budget={config.time_budget}"
        )
    return epochs, step_s


def measure_step_s(model, batches, steps=8):
    """Median seconds of `steps` training steps on `batches`, after two untimed ones (tracing).

    Off TensorFlow, `fit` prepares each batch between steps, so its time is counted; on
    TensorFlow `tf.data` prepares it alongside (`fit_input`), so batches are drawn first.
    """
    from sepconv.bench._timing import measure

    indices = itertools.count()
    drawn = [batches[i % len(batches)] for i in range(steps + 2)] if keras.backend.backend() == "tensorflow" else None

    def step():
        index = next(indices)
        images, labels = drawn[index] if drawn else batches[index % len(batches)]
        return model.train_on_batch(images, labels)

    return measure(step, warmup=2, repeats=steps).median


def tta_views(shift=0):
    """`(rows, cols, mirror)` of each view test-time augmentation averages: the image and its
    left-right mirror, and with `shift` each also moved diagonally by `shift` pixels in the
    four directions (10 views). `shift=1` was chosen on a held-out split
    (`docs/results/tta-heldout/`)."""
    moves = [(0, 0)] + ([(shift, shift), (-shift, -shift), (shift, -shift), (-shift, shift)] if shift else [])
    return [(rows, cols, mirror) for rows, cols in moves for mirror in (False, True)]


def _view(images, rows, cols, mirror, data_format):
    """`images` moved so that output pixel `(i, j)` shows input pixel `(i + rows, j + cols)`, zero
    outside (the mean colour of standardized images), then mirrored."""
    h_axis = 1 if data_format == "channels_last" else 2
    if rows or cols:
        pad = max(abs(rows), abs(cols))
        padding = [[0, 0]] * 4
        padding[h_axis] = padding[h_axis + 1] = [pad, pad]
        height, width = images.shape[h_axis], images.shape[h_axis + 1]
        window = [slice(None)] * 4
        window[h_axis] = slice(pad + rows, pad + rows + height)
        window[h_axis + 1] = slice(pad + cols, pad + cols + width)
        images = keras.ops.pad(images, padding)[tuple(window)]
    return keras.ops.flip(images, axis=h_axis + 1) if mirror else images


def tta_accuracy(model, batches, shift=0):
    """Accuracy of the mean of `model`'s predictions over `tta_views(shift)` of each image.

    Measured by `evaluate` on a model that averages the views, so that under a
    distribution the count covers every process's share of `batches`, as `test_accuracy` does.
    """
    images = keras.Input(model.inputs[0].shape[1:])
    views = [
        keras.layers.Lambda(lambda x, v=v: _view(x, *v, batches.data_format))(images) for v in tta_views(shift)
    ]
    mean = keras.layers.Average()([model(view) for view in views])
    averaged = keras.Model(images, mean)
    averaged.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return float(averaged.evaluate(batches, verbose=0, return_dict=True)["accuracy"])


def _remove_stale_checkpoints(folder, keep):
    """Deletes `epoch-NNN.keras` files that `state.json` does not name (an interrupted save)."""
    for file in os.listdir(folder):
        if layout.is_checkpoint(file) and file != keep:
            os.remove(os.path.join(folder, file))
