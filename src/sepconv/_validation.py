"""Argument checks for the whole library, and their command-line twins.

Each value is checked once, where it is owned (a layer's `__init__`, a config's
`__post_init__`, a function's entry), with these functions. Messages follow Keras: say what
was expected, end with the value received, `"epochs must be positive. Received: epochs=0"`.
A wrong type is a `TypeError`, a wrong value a `ValueError`.

The command line reuses the same checks through the config fields that carry them
(`sepconv._options`), reporting the flag as the name.
"""

import difflib
import math
import numbers

_PADDINGS = ("valid", "same", "causal")
_DATA_FORMATS = ("channels_last", "channels_first")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(value, name, minimum=None):
    """An int (numpy ints too, not bools) of at least `minimum`."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer. Received: {name}={value!r}")
    if minimum is not None and value < minimum:
        what = {0: "non-negative", 1: "positive"}.get(minimum, f"at least {minimum}")
        raise ValueError(f"{name} must be {what}. Received: {name}={value!r}")
    return int(value)


def positive_int(value, name):
    return integer(value, name, minimum=1)


def non_negative_int(value, name):
    return integer(value, name, minimum=0)


def number(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in the interval given (ends closed unless `*_open`)."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a number. Received: {name}={value!r}")
    value = float(value) if not isinstance(value, int) else value
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
        raise ValueError(f"{name} must be a number in {interval}. Received: {name}={value!r}")
    return value


def boolean(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False. Received: {name}={value!r}")
    return value


def string(value, name):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string. Received: {name}={value!r}")
    return value


def choice(value, allowed, name):
    """`value` if it is one of `allowed`; else a ValueError listing them, with close matches."""
    allowed = tuple(allowed)
    if value not in allowed:
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"{name} must be one of {', '.join(repr(a) for a in allowed)}.{hint} Received: {name}={value!r}"
        )
    return value


def optional(check):
    """`check` that also lets None through."""

    def check_optional(value, name, **kwargs):
        return None if value is None else check(value, name, **kwargs)

    return check_optional


def int_tuple(value, rank, name):
    """Turns an int or a sequence of `rank` positive ints into a tuple."""
    if _is_int(value):
        values = (int(value),) * rank
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise TypeError(
                f"{name} must be an integer or a tuple of {rank} integers. Received: {name}={value!r}"
            ) from None
        if len(values) != rank:
            raise ValueError(
                f"{name} must be an integer or a tuple of {rank} integers. Received: {name}={value!r}"
            )
        if not all(_is_int(v) for v in values):
            raise TypeError(f"{name} must contain only integers. Received: {name}={value!r}")
        values = tuple(int(v) for v in values)
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive. Received: {name}={values}")
    return values


def padding(value, rank):
    allowed = _PADDINGS if rank == 1 else _PADDINGS[:2]
    normalized = value.lower() if isinstance(value, str) else value
    if normalized not in allowed:
        raise ValueError(
            f"padding must be one of {', '.join(repr(p) for p in allowed)}. Received: padding={value!r}"
        )
    return normalized


def data_format(value):
    import keras

    if value is None:
        return keras.config.image_data_format()
    normalized = value.lower() if isinstance(value, str) else value
    if normalized not in _DATA_FORMATS:
        raise ValueError(
            f"data_format must be 'channels_last' or 'channels_first'. Received: data_format={value!r}"
        )
    return normalized


def each(check):
    """`check` applied to every item of a non-empty sequence; returns a tuple."""

    def check_each(values, name, **kwargs):
        if isinstance(values, str) or not hasattr(values, "__iter__"):
            raise TypeError(f"{name} must be a sequence. Received: {name}={values!r}")
        values = tuple(values)
        if not values:
            raise ValueError(f"{name} must not be empty. Received: {name}={values!r}")
        return tuple(check(value, name, **kwargs) for value in values)

    return check_each
