"""Config dataclasses whose fields carry their own check, help and command-line form.

A field made with `option(...)` holds everything about one setting, so adding a setting
is one edit: the dataclass validates it in `__post_init__` (`validate`), the command line
gets a flag with that help and the same check (`sepconv.cli._args.add_options`), and a
run's record can spell the command that repeats it (`to_flags`).

    epochs: int = option(10, "passes over the training set", check=_validation.positive_int)

`check(value, name)` returns the (normalized) value or raises; `parse(text, name)` turns
command-line text into the value's type before the check; `nargs="+"` takes several values.
"""

import ast
import dataclasses
import functools
import shlex

from sepconv import _validation


def option(default=dataclasses.MISSING, help="", *, check=None, parse=None, metavar=None, nargs=None,
           flag=True, default_factory=dataclasses.MISSING):  # fmt: skip
    """A dataclass field with its check and command-line form (see the module docstring).

    Args:
        default: the default value (or `default_factory`).
        help: one line for `--help`.
        check: `check(value, name)` -> value; raises TypeError/ValueError.
        parse: `parse(text, name)` -> value, for the command line (default: the text).
        metavar: the placeholder `--help` shows.
        nargs: "+" for a flag taking one or more values (checked one by one).
        flag: False for a field with no command-line flag; a string to spell it other
            than `--field-name` (e.g. "--mode" for `modes`).
    """
    metadata = dict(help=help, check=check, parse=parse or parse_str, metavar=metavar, nargs=nargs, flag=flag)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def validate(config):
    """Runs every field's check on a (frozen or not) dataclass instance, storing normalized values."""
    for field in dataclasses.fields(config):
        check = field.metadata.get("check")
        if check is not None:
            object.__setattr__(config, field.name, check(getattr(config, field.name), field.name))
    return config


def flag_name(field):
    """The command-line flag of a field: `batch_size` -> `--batch-size`, unless it names its own."""
    spelled = field.metadata.get("flag")
    return spelled if isinstance(spelled, str) else "--" + field.name.replace("_", "-")


def flag_fields(config_class):
    """The fields of `config_class` that have a command-line flag, in declaration order."""
    return [f for f in dataclasses.fields(config_class) if f.metadata.get("flag")]


def to_flags(config, skip=()):
    """The flags that give `config`'s values on a command line (None and empty values left out).

    Values are quoted for a POSIX shell, so `shlex.split` gives back the arguments.
    """
    flags = []
    for field in flag_fields(type(config)):
        value = getattr(config, field.name)
        if field.name in skip or value is None or value == {}:
            continue
        name = flag_name(field)
        if isinstance(value, bool):
            flags.append(name if value else f"--no-{name[2:]}")
        elif isinstance(value, dict):
            flags.append(" ".join([name, *(shlex.quote(spell_key_value(k, v)) for k, v in value.items())]))
        elif isinstance(value, tuple):
            flags.append(" ".join([name, *(shlex.quote(str(v)) for v in value)]))
        else:
            flags.append(f"{name} {shlex.quote(str(value))}")
    return flags


# --- command-line text to values ----------------------------------------------------------


def parse_str(text, name):
    return text


def parse_int(text, name):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer. Received: {name}={text}") from None


def parse_float(text, name):
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number. Received: {name}={text}") from None


def parse_key_value(text, name):
    """`KEY=VALUE` -> (KEY, VALUE): a Python literal (`5`, `0.5`, `(3, 5)`, `True`) or else the text."""
    key, equals, value = text.partition("=")
    if not equals or not key.isidentifier():
        raise ValueError(f"{name} must be KEY=VALUE with KEY a Python name. Received: {name}={text}")
    return key, _literal(value)


def builder_arguments(reserved=(), setter="the run"):
    """A check for a dict of model-builder arguments (`--model-arg` gives (key, value) pairs);
    the keys in `reserved` are `setter`'s to set."""

    def check_builder_arguments(value, name):
        if isinstance(value, (list, tuple)) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
            value = dict(value)
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(f"{name} must be a dict with string keys. Received: {name}={value!r}")
        taken = [k for k in value if k in reserved]
        if taken:
            raise ValueError(f"{name} cannot set {', '.join(taken)}: {setter} sets it. Received: {name}={value!r}")
        return value

    return check_builder_arguments


def spell_key_value(key, value):
    """The inverse of `parse_key_value`: text that parses back to (key, value)."""
    if isinstance(value, str) and _literal(value) == value:
        return f"{key}={value}"
    return f"{key}={value!r}"


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def one_of(allowed):
    """A check: `value` must be in `allowed` (a tuple, or a function returning one)."""

    def check_choice(value, name):
        return _validation.choice(value, allowed() if callable(allowed) else allowed, name)

    return check_choice


def in_range(**interval):
    """A check: a number in the interval (`low`, `high`, `low_open`, `high_open`)."""
    return functools.partial(_validation.number, **interval)
