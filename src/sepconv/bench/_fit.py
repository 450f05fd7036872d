"""`sepconv bench fit`: a real training epoch next to the step it repeats.

For each model and augmentation setting, on the real data: whole `fit` epochs through
the same data pipeline, callbacks and compile settings as `sepconv train`
(`sepconv.training`), alternating with blocks of as many training steps alone
(`train_on_batch` on one fixed batch, as `sepconv bench model` times it). Epoch img/s is
what `sepconv train` reports (images / time from the epoch's start to its last step);
`fit_vs_step` is the median over epochs of epoch img/s / the mean img/s of the step
blocks before and after it: how much of the step's speed a run keeps.
"""

import dataclasses
import statistics

from sepconv import _options, _provenance, _validation
from sepconv._options import option
from sepconv.bench import _timing
from sepconv.bench._render import augment_label
from sepconv.training._config import DTYPE_POLICIES, RECIPES


# Timing options `fit` does not use: steps are timed in blocks of one epoch, after a warm-up epoch.
_UNUSED = ("warmup", "repeats", "matmul_size")


def _model_name(name, argument):
    from sepconv.models import check_model_name

    return check_model_name(name, argument)


# off; on: crop and flip; trivial: crop, flip and TrivialAugment (`sepconv train --augment --trivial-augment`).
AUGMENT_SETTINGS = ("off", "on", "trivial")


def _augment_setting(value, name):
    return _validation.choice(value, AUGMENT_SETTINGS, name)


@dataclasses.dataclass
class FitBenchConfig(_timing.TimingOptions):
    """What `run` measures: for each model and augmentation setting, steps and epochs."""

    models: tuple = option(("vgg_separable",), "registry model names", check=_validation.each(_model_name),
                           nargs="+", metavar="MODEL", flag=False)  # fmt: skip
    augment: tuple = option(("off", "on"), "augmentation settings to time: off, on (random crop and flip), trivial "
                            "(crop, flip and TrivialAugment)",
                            check=_validation.each(_augment_setting), nargs="+", metavar="off|on|trivial")  # fmt: skip
    train_size: int = option(5120, "training images per epoch (stratified subset)", check=_validation.positive_int,
                             parse=_options.parse_int, metavar="N")  # fmt: skip
    epochs: int = option(2, "timed fit epochs (after one untimed warm-up epoch)", check=_validation.positive_int,
                         parse=_options.parse_int, metavar="N")  # fmt: skip
    data: str | None = option(None, "CIFAR-10 copy (default: $SEPCONV_DATA, else keras.datasets)",
                              check=_validation.optional(_validation.string), metavar="PATH")  # fmt: skip
    recipe: str = option("tutorial", "sepconv train recipe whose optimizer, schedule and loss compile the model: "
                         + ", ".join(RECIPES), check=_options.one_of(tuple(RECIPES)), metavar="NAME")  # fmt: skip
    dtype_policy: str = option("float32", "Keras dtype policy of the model, as sepconv train --dtype-policy",
                               check=_options.one_of(DTYPE_POLICIES), metavar="POLICY")  # fmt: skip

    def __post_init__(self):
        super().__post_init__()
        if self.train_size < self.batch_size:
            raise ValueError(
                "train_size must be at least batch_size (an epoch of full batches). "
                f"Received: train_size={self.train_size}, batch_size={self.batch_size}"
            )


def _fit_epochs(model_name, splits, train_config, config, progress):
    """Steps and epochs of one model under `train_config`, alternating; returns the measurements.

    Each timed epoch sits between two blocks of as many `train_on_batch` steps as an
    epoch has, so an epoch and the steps it is compared with share the machine's state
    (speed drifts by 10% or more over a minute on a shared machine).
    """
    from sepconv.training import _loop
    from sepconv.training._callbacks import DataEpoch, EpochLog

    train = _loop.training_batches(splits, train_config)
    model = _loop.build_model(
        model_name, train_config, splits.x_train.shape[1:], len(splits.class_names), len(train)
    )
    x, y = train[0]
    steps = len(train) - (len(splits.y_train) % train_config.batch_size != 0)  # full batches only

    def step_block():
        timing = _timing.measure(lambda: model.train_on_batch(x, y), warmup=0, repeats=steps)
        return timing, train_config.batch_size * steps / sum(timing.samples)

    log = EpochLog(model_name, len(splits.y_train))
    callbacks = [DataEpoch(train), log]
    if progress:
        setting = augment_label(train_config.augment, train_config.trivial_augment)
        progress(f"{model_name}: augment {setting}, {config.epochs + 1} fit epochs")
    # The first epoch compiles the train function (`train_on_batch` reuses it) and warms the pipeline up.
    data = _loop.fit_input(train)
    model.fit(data, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
    _, block_img_s = step_block()
    blocks, samples, ratios = [block_img_s], [], []
    for epoch in range(1, config.epochs + 1):
        model.fit(data, initial_epoch=epoch, epochs=epoch + 1, shuffle=False, verbose=0, callbacks=callbacks)
        timing, block_img_s = step_block()
        samples += list(timing.samples)
        ratios.append(log.rows[-1]["images_per_s"] / ((blocks[-1] + block_img_s) / 2))
        blocks.append(block_img_s)
    step_time = statistics.median(samples)
    epochs_img_s = [row["images_per_s"] for row in log.rows[1:]]
    return {
        "model": model_name,
        "dtype_policy": model.dtype_policy.name,
        "optimizer": type(model.optimizer).__name__,
        "augment": train_config.augment,
        "trivial_augment": train_config.trivial_augment,
        "train_images": len(splits.y_train),
        "batch_size": train_config.batch_size,
        "step": _timing.Timing(tuple(samples)).to_dict(),
        "step_images_per_s": train_config.batch_size / step_time,
        "step_blocks_images_per_s": blocks,
        "fit_epochs_images_per_s": epochs_img_s,
        "fit_images_per_s": statistics.median(epochs_img_s),
        "fit_vs_step_per_epoch": ratios,
        "fit_vs_step": statistics.median(ratios),
    }


def run(config, progress=None):
    """Runs the fit benchmark; returns a JSON-ready dict (environment, config, results)."""
    from sepconv import kernels
    from sepconv.data import load_cifar10, make_splits
    from sepconv.training import make_config

    data = load_cifar10(config.data, progress=progress is not None)
    splits = make_splits(data, train_size=config.train_size, validation="test", seed=config.seed)
    results = []
    with kernels.use_depthwise_implementation(config.implementation):
        for name in config.models:
            for setting in config.augment:
                train_config = make_config(
                    config.recipe, batch_size=config.batch_size, augment=setting != "off",
                    trivial_augment=setting == "trivial", seed=config.seed, dtype_policy=config.dtype_policy,
                )
                results.append(_fit_epochs(name, splits, train_config, config, progress))
    return {
        "benchmark": "fit",
        "environment": _provenance.environment(),
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in _UNUSED},
        "data": {"source": splits.source, "train_images": len(splits.y_train)},
        "conventions": {
            "step": "train_on_batch on one fixed batch, in blocks of one epoch's full batches between the epochs",
            "fit": "images / (time from the epoch's start to its last step), median over the timed epochs, as "
            "`sepconv train` reports it; one untimed epoch first",
            "fit_vs_step": "median over epochs of epoch img/s / mean img/s of the step blocks around the epoch",
        },
        "results": results,
    }
