"""Model registry: `create_model(name, **kwargs)` and `list_models()`."""

import difflib
import inspect

import keras

_BUILDERS = {}


def register_model(name, builder=None, **defaults):
    """Register `builder` under `name`; `defaults` are bound keyword arguments.

    Usable as a decorator (`@register_model("vgg")`) or a call.
    """

    def add(function):
        if name in _BUILDERS:
            raise ValueError(f"A model named {name!r} is already registered. Received: name={name!r}")
        _BUILDERS[name] = (function, defaults)
        return function

    return add if builder is None else add(builder)


def list_models():
    """Names accepted by `create_model`, sorted."""
    return sorted(_BUILDERS)


def _did_you_mean(word, choices):
    close = difflib.get_close_matches(word, choices, n=3)
    return f" Did you mean {', '.join(close)}?" if close else ""


def check_model_name(name, argument="name"):
    """`name` if it is registered; else a ValueError listing the known names and close matches."""
    if name not in _BUILDERS:
        known = list_models()
        raise ValueError(
            f"Unknown model. Known models: {', '.join(known)}.{_did_you_mean(str(name), known)} "
            f"Received: {argument}={name!r}"
        )
    return name


def check_model_arguments(name, kwargs, argument="kwargs"):
    """`kwargs` if `name`'s builder takes every key; else a ValueError listing what it takes.

    Lets a run reject a misspelled argument before it loads data, not when it builds.
    """
    builder, _ = _BUILDERS[check_model_name(name)]
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    known = [p for p in parameters if parameters[p].kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = [key for key in kwargs if key not in known]
    if unknown:
        raise ValueError(
            f"Model {name!r} takes no argument {', '.join(unknown)}; it takes {', '.join(known)}."
            f"{_did_you_mean(unknown[0], known)} "
            f"Received: {argument}={kwargs!r}"
        )
    return kwargs


def create_model(name, dtype_policy=None, **kwargs):
    """Build the registered model `name`; keyword arguments go to its builder.

    `dtype_policy` (a Keras policy name: "float32", "mixed_bfloat16", ...) is
    Keras' global policy while the model is built, so every layer keeps it, in
    a saved file too; the global policy is restored after. None builds under
    the global policy as it is.
    """
    builder, defaults = _BUILDERS[check_model_name(name)]
    if dtype_policy is None:
        return builder(**{**defaults, **kwargs})
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy(dtype_policy)
    except (ValueError, TypeError):
        raise ValueError(
            f"dtype_policy must be a Keras dtype policy name such as 'float32' or 'mixed_bfloat16'. "
            f"Received: dtype_policy={dtype_policy!r}"
        ) from None
    try:
        return builder(**{**defaults, **kwargs})
    finally:
        keras.config.set_dtype_policy(previous)
