"""`TrainConfig`: every setting of a training run, with recipes and presets.

A recipe is a complete set of optimization defaults; a preset shrinks the data and the
epochs of any recipe; keyword overrides win over both:

    config = make_config("strong", preset="quick", epochs=5)

* ``"tutorial"``: the Keras CNN tutorial's setup. Adam at 1e-3, batch 128, 10 epochs, no
  augmentation, validation on the test set.
* ``"strong"``: a modern recipe for reaching high accuracy. AdamW with linear warmup then cosine
  decay (Loshchilov & Hutter 2017, arXiv:1608.03983 and arXiv:1711.05101), decoupled
  weight decay, label smoothing 0.1 (Szegedy et al. 2016, arXiv:1512.00567), random crop
  and flip, 30 epochs, and a 10% stratified hold-out for validation so the test set is
  only used once, at the end. Adam-type updates keep the batch-norm-free VGGs trainable
  with the same settings as the BN models (`vgg_mobilenet`, `mobilenet_v1`,
  `dsc_resnet`), so a comparison can share one recipe.
* ``"fast"``: accuracy per CPU-hour for BatchNorm networks (`dsc_resnet10`, `mobilenet_v2`).
  SGD with Nesterov momentum 0.9 at 0.1, one warmup epoch then cosine decay, 30 epochs,
  label smoothing 0.1, crop and flip, flip test-time augmentation, and weight decay
  5e-3 in Keras' decoupled form (`w -= lr * 5e-3 * w` per step: at lr 0.1 the shrinkage
  of the classic coupled 5e-4 under momentum 0.9) on convolution and dense kernels only,
  not on BatchNorm, biases or depthwise kernels (MobileNets, arXiv:1704.04861, Sec. 4:
  depthwise filters hold so few weights that decay hurts them).
* preset ``"quick"``: 5,000 stratified training images, 3 epochs, 2,000 validation images;
  a few minutes on a 2-core CPU. Its numbers show that the pipeline works, not how
  good a model is.
"""

import dataclasses
import difflib

from sepconv import _options, _validation
from sepconv._options import in_range, one_of, option

OPTIMIZERS = ("adam", "adamw", "sgd")
# float32, or bfloat16 compute with float32 weights, statistics and loss (Keras' mixed precision).
DTYPE_POLICIES = ("float32", "mixed_bfloat16")
SCHEDULES = ("constant", "cosine")
NO_DECAY_KINDS = ("norm", "bias", "depthwise", "none")

RECIPES = {
    "tutorial": dict(
        epochs=10,
        batch_size=128,
        optimizer="adam",
        lr=1e-3,
        schedule="constant",
        warmup_epochs=0.0,
        weight_decay=0.0,
        label_smoothing=0.0,
        augment=False,
        validation="test",
    ),
    "strong": dict(
        epochs=30,
        batch_size=128,
        optimizer="adamw",
        lr=2e-3,
        schedule="cosine",
        warmup_epochs=2.0,
        weight_decay=0.05,
        label_smoothing=0.1,
        augment=True,
        validation=0.1,
    ),
    "fast": dict(
        epochs=30,
        batch_size=128,
        optimizer="sgd",
        lr=0.1,
        schedule="cosine",
        warmup_epochs=1.0,
        momentum=0.9,
        weight_decay=5e-3,
        no_decay=("norm", "bias", "depthwise"),
        label_smoothing=0.1,
        augment=True,
        tta=True,
        validation=0.1,
    ),
}

PRESETS = {
    "quick": dict(train_size=5000, epochs=3, val_size=2000),
}


def _test_or_fraction(value, name):
    if value == "test":
        return value
    if isinstance(value, str):
        raise ValueError(f"{name} must be 'test' or a fraction in (0, 1). Received: {name}={value!r}")
    return _validation.number(value, name, low=0.0, high=1.0, low_open=True, high_open=True)


def _parse_validation(text, name):
    if text == "test":
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be 'test' or a fraction in (0, 1). Received: {name}={text}") from None


def _check_no_decay(value, name):
    """A tuple of kinds; a single kind may come bare, JSON gives a list."""
    kinds = _validation.each(one_of(NO_DECAY_KINDS))((value,) if isinstance(value, str) else value, name)
    if "none" in kinds and len(kinds) > 1:
        raise ValueError(f"{name} takes 'none' alone or a list of kinds. Received: {name}={tuple(kinds)}")
    return kinds


# The run sets these from its data and dtype policy, so a builder argument cannot.
_RUN_ARGUMENTS = ("input_shape", "num_classes", "dtype_policy")
_check_model_kwargs = _options.builder_arguments(reserved=_RUN_ARGUMENTS)


_positive = _validation.positive_int
_optional_positive = _validation.optional(_validation.positive_int)
_int, _float = _options.parse_int, _options.parse_float


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a run computes. Defaults are the tutorial recipe.

    Each field carries its check and its `sepconv train` / `sepconv compare` flag
    (`--batch-size` for `batch_size`, help text as below); see `sepconv._options`.
    `data` is a record of where the images came from, not a setting of the computation.
    """

    recipe: str = option("tutorial", "recipe giving the optimization defaults: " + ", ".join(RECIPES),
                         check=one_of(tuple(RECIPES)), metavar="NAME")  # fmt: skip
    preset: str | None = option(None, "shrink data and epochs on top of the recipe: " + ", ".join(PRESETS),
                                check=_validation.optional(one_of(tuple(PRESETS))), metavar="NAME")  # fmt: skip
    epochs: int = option(10, "passes over the training set", check=_positive, parse=_int, metavar="N")
    time_budget: float | None = option(None, "minutes of wall clock per model: replaces --epochs by as many epochs "
                                       "as fit, planned from the step time measured here before training (at most) "
                                       "and re-planned after each epoch from the epochs' wall time (the schedule "
                                       "ends there)",
                                       check=_validation.optional(in_range(low=0.0, low_open=True)), parse=_float,
                                       metavar="MIN")  # fmt: skip
    batch_size: int = option(128, "images per step, for training and validation", check=_positive, parse=_int,
                             metavar="N")  # fmt: skip
    dtype_policy: str = option("float32", "Keras dtype policy of the model: float32, or mixed_bfloat16 (bfloat16 "
                               "compute, float32 weights; faster where the hardware multiplies bfloat16 fast, "
                               "e.g. CPUs with AMX)", check=one_of(DTYPE_POLICIES), metavar="POLICY")  # fmt: skip
    optimizer: str = option("adam", "adam, adamw or sgd (SGD with Nesterov momentum)", check=one_of(OPTIMIZERS),
                            metavar="NAME")  # fmt: skip
    lr: float = option(1e-3, "learning rate; the peak rate with --schedule cosine",
                       check=in_range(low=0.0, low_open=True), parse=_float, metavar="X")  # fmt: skip
    schedule: str = option("constant", "constant, or cosine: linear warmup from lr/10, then cosine decay to 0",
                           check=one_of(SCHEDULES), metavar="NAME")  # fmt: skip
    warmup_epochs: float = option(0.0, "length of the cosine schedule's warmup, in epochs (fractions allowed)",
                                  check=in_range(low=0.0), parse=_float, metavar="X")  # fmt: skip
    momentum: float = option(0.9, "momentum of sgd", check=in_range(low=0.0, high=1.0, high_open=True),
                             parse=_float, metavar="X")  # fmt: skip
    weight_decay: float = option(0.0, "decoupled weight decay: w -= lr * weight_decay * w each step, on the weights --no-decay leaves",
                                 check=in_range(low=0.0), parse=_float, metavar="X")  # fmt: skip
    label_smoothing: float = option(0.0, "mass spread uniformly over the classes of each target",
                                    check=in_range(low=0.0, high=1.0, high_open=True), parse=_float,
                                    metavar="X")  # fmt: skip
    augment: bool = option(False, "random 4-pixel-padded crops and horizontal flips", check=_validation.boolean)
    trivial_augment: bool = option(False, "after the crop, one TrivialAugment operation per image at a random "
                                   "magnitude (wide magnitudes; Pillow's colour operations)",
                                   check=_validation.boolean)  # fmt: skip
    cutout: int = option(0, "side of a square zeroed at a random place of each training image (0: off)",
                         check=_validation.non_negative_int, parse=_int, metavar="N")  # fmt: skip
    mixup: float = option(0.0, "mix each training batch with itself reversed, with one weight per batch drawn from "
                          "Beta(X, X), and the labels alike (mixup; 0: off)",
                          check=in_range(low=0.0), parse=_float, metavar="X")  # fmt: skip
    ema_momentum: float = option(0.0, "keep a moving average of the weights with this momentum: validation, "
                                 "best.keras and final.keras use it, training never does (0: off)",
                                 check=in_range(low=0.0, high=1.0, high_open=True), parse=_float,
                                 metavar="X")  # fmt: skip
    no_decay: tuple = option(("norm", "bias"), "weights that weight decay leaves alone: norm (BatchNorm scale "
                             "and offset), bias, depthwise (depthwise kernels), or none",
                             check=_check_no_decay, nargs="+", metavar="KIND")  # fmt: skip
    tta: bool = option(False, "also report test accuracy with flip test-time augmentation (mean of the "
                       "predictions for each image and its mirror)", check=_validation.boolean)  # fmt: skip
    tta_shift: int = option(0, "with --tta, also average each view moved diagonally by this many pixels in the "
                            "four directions (10 views; 1 was best on a held-out split)",
                            check=_validation.non_negative_int, parse=_int, metavar="N")  # fmt: skip
    train_size: int | None = option(None, "stratified subset of the training images (default: all)",
                                    check=_optional_positive, parse=_int, metavar="N")  # fmt: skip
    validation: str | float = option("test", "'test' (the test set, as in the tutorial) or a held-out fraction "
                                     "in (0, 1) of the training images, stratified",
                                     check=_test_or_fraction, parse=_parse_validation,
                                     metavar="test|FRACTION")  # fmt: skip
    val_size: int | None = option(None, "at most this many validation images (a stratified subset)",
                                  check=_optional_positive, parse=_int, metavar="N")  # fmt: skip
    seed: int = option(0, "fixes the subsets, the data order, augmentation and the initial weights",
                       check=_validation.non_negative_int, parse=_int, metavar="N")  # fmt: skip
    data: str | None = option(None, "CIFAR-10 copy (default: $SEPCONV_DATA, else keras.datasets)",
                              check=_validation.optional(_validation.string), metavar="PATH")  # fmt: skip
    model_kwargs: dict = option(default_factory=dict, help="arguments for the model's builder, e.g. kernel_size=5 "
                                "or width=0.75 (VALUE a Python literal, else text)",
                                check=_check_model_kwargs, parse=_options.parse_key_value, nargs="+",
                                metavar="KEY=VALUE", flag="--model-arg")  # fmt: skip

    def __post_init__(self):
        _options.validate(self)
        if self.tta_shift and not self.tta:
            raise ValueError(f"tta_shift needs tta=True. Received: tta_shift={self.tta_shift}, tta={self.tta}")
        if self.schedule == "cosine" and self.warmup_epochs >= self.epochs and not self.time_budget:
            raise ValueError(
                "warmup_epochs must be less than epochs with schedule='cosine'. "
                f"Received: warmup_epochs={self.warmup_epochs}, epochs={self.epochs}"
            )

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """The inverse of `to_dict`; unknown keys are an error."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown TrainConfig fields. Received: {', '.join(unknown)}")
        values = dict(values)
        # Runs recorded before `no_decay` existed decayed every weight: a resume must too.
        values.setdefault("no_decay", ("none",))
        if isinstance(values.get("model_kwargs"), dict):  # JSON turns tuples into lists
            values["model_kwargs"] = {k: _tuples(v) for k, v in values["model_kwargs"].items()}
        return cls(**values)


def make_config(recipe="tutorial", preset=None, **overrides):
    """A `TrainConfig` from a recipe, then a preset, then `overrides` (field=value)."""
    _validation.choice(recipe, tuple(RECIPES), "recipe")
    if preset is not None:
        _validation.choice(preset, tuple(PRESETS), "preset")
    fields = sorted({f.name for f in dataclasses.fields(TrainConfig)} - {"recipe", "preset"})
    for name, value in overrides.items():
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"Unknown TrainConfig field.{hint} Received: {name}={value!r}")
    values = {**RECIPES[recipe], **(PRESETS[preset] if preset else {}), **overrides}
    return TrainConfig(recipe=recipe, preset=preset, **values)


def rerun_command(model_names, config):
    """The `sepconv compare` command line that repeats a run."""
    return " ".join(["sepconv compare", *model_names, *_options.to_flags(config)])


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
