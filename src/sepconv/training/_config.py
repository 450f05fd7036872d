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
* preset ``"quick"``: 5,000 stratified training images, 3 epochs, 2,000 validation images;
  a few minutes on a 2-core CPU. Its numbers show that the pipeline works, not how
  good a model is.
"""

import dataclasses
import difflib
import math
import numbers

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")

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
}

PRESETS = {
    "quick": dict(train_size=5000, epochs=3, val_size=2000),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a run computes. Defaults are the tutorial recipe.

    Attributes:
        recipe: name of the recipe the optimization settings came from (a record).
        preset: name of the preset applied on top of it, or None (a record).
        epochs: passes over the training set.
        batch_size: images per step, for training and validation.
        optimizer: "adam", "adamw" or "sgd" (SGD with Nesterov momentum `momentum`).
        lr: learning rate; with schedule "cosine" the peak reached after warmup.
        schedule: "constant", or "cosine": linear warmup from lr/10 over `warmup_epochs`,
            then cosine decay to 0 at the last step.
        warmup_epochs: length of the warmup, in epochs (fractions allowed).
        momentum: momentum of "sgd".
        weight_decay: decoupled weight decay, applied as `w -= lr * weight_decay * w`
            to every weight (Keras's convention, for all three optimizers).
        label_smoothing: mass spread uniformly over the classes of each target.
        augment: random 4-pixel-padded crops and horizontal flips.
        train_size: stratified subset of the training images, or None for all.
        validation: "test" (the test set, as in the tutorial) or a fraction in (0, 1)
            of the training images held out, stratified.
        val_size: at most this many validation images (a stratified subset), or None.
        seed: fixes the subsets, the data order, augmentation and the initial weights.
        data: path of a CIFAR-10 copy; None uses $SEPCONV_DATA, else keras.datasets.
        model_kwargs: keyword arguments for `sepconv.models.create_model`.
    """

    recipe: str = "tutorial"
    preset: str | None = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = False
    train_size: int | None = None
    validation: str | float = "test"
    val_size: int | None = None
    seed: int = 0
    data: str | None = None
    model_kwargs: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _check_name(self.recipe, RECIPES, "recipe")
        if self.preset is not None:
            _check_name(self.preset, PRESETS, "preset")
        for name in ("epochs", "batch_size"):
            _check_int(getattr(self, name), name, minimum=1)
        _check_int(self.seed, "seed", minimum=0)
        for name in ("train_size", "val_size"):
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name, minimum=1)
        _check_name(self.optimizer, OPTIMIZERS, "optimizer")
        _check_name(self.schedule, SCHEDULES, "schedule")
        _check_real(self.lr, "lr", low=0.0, low_open=True)
        for name in ("warmup_epochs", "weight_decay"):
            _check_real(getattr(self, name), name, low=0.0)
        _check_real(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        _check_real(self.label_smoothing, "label_smoothing", low=0.0, high=1.0, high_open=True)
        if not isinstance(self.augment, bool):
            raise TypeError(f"augment must be True or False. Received: augment={self.augment!r}")
        if self.schedule == "cosine" and self.warmup_epochs >= self.epochs:
            raise ValueError(
                "warmup_epochs must be less than epochs with schedule='cosine'. "
                f"Received: warmup_epochs={self.warmup_epochs}, epochs={self.epochs}"
            )
        if isinstance(self.validation, str) and self.validation != "test":
            raise ValueError(
                f"validation must be 'test' or a fraction in (0, 1). Received: validation={self.validation!r}"
            )
        if self.validation != "test":
            _check_real(self.validation, "validation", low=0.0, high=1.0, low_open=True, high_open=True)
        if self.data is not None and not isinstance(self.data, str):
            raise TypeError(f"data must be a path string or None. Received: data={self.data!r}")
        if not isinstance(self.model_kwargs, dict):
            raise TypeError(f"model_kwargs must be a dict. Received: model_kwargs={self.model_kwargs!r}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """The inverse of `to_dict`; unknown keys are an error."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown TrainConfig fields. Received: {', '.join(unknown)}")
        values = dict(values)
        if isinstance(values.get("model_kwargs"), dict):  # JSON turns tuples into lists
            values["model_kwargs"] = {k: _tuples(v) for k, v in values["model_kwargs"].items()}
        return cls(**values)


def make_config(recipe="tutorial", preset=None, **overrides):
    """A `TrainConfig` from a recipe, then a preset, then `overrides` (field=value)."""
    _check_name(recipe, RECIPES, "recipe")
    if preset is not None:
        _check_name(preset, PRESETS, "preset")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"recipe", "preset"}
    for name, value in overrides.items():
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"Unknown TrainConfig field.{hint} Received: {name}={value!r}")
    values = {**RECIPES[recipe], **(PRESETS[preset] if preset else {}), **overrides}
    return TrainConfig(recipe=recipe, preset=preset, **values)


def _check_name(value, allowed, name):
    if value not in allowed:
        close = difflib.get_close_matches(str(value), list(allowed), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{name} must be one of {', '.join(repr(a) for a in allowed)}.{hint} Received: {name}={value!r}"
        )


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}. Received: {name}={value}")


def _check_real(value, name, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number. Received: {name}={value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite. Received: {name}={value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
        raise ValueError(f"{name} must be in {interval}. Received: {name}={value!r}")


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
