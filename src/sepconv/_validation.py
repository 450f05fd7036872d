"""Argument checks shared by layers and helpers.

Messages follow Keras: say what was expected, end with the value received.
"""

_PADDINGS = ("valid", "same", "causal")
_DATA_FORMATS = ("channels_last", "channels_first")


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer. Received: {name}={value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive. Received: {name}={value}")
    return value


def int_tuple(value, rank, name):
    """Turns an int or a sequence of `rank` positive ints into a tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        values = (value,) * rank
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
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise TypeError(f"{name} must contain only integers. Received: {name}={value!r}")
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


def choice(value, allowed, name):
    if value not in allowed:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(a) for a in allowed)}. Received: {name}={value!r}"
        )
    return value
