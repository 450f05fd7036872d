"""What the commands share: flags generated from config fields, value parsers, model loading.

Flags of a config dataclass come from its fields (`sepconv._options.option`): the flag
name, help, metavar and an argparse `type=` that parses the text and runs the field's own
check, so the command line and the library accept and reject the same values and a new
option is one edit.
"""

import argparse
import dataclasses
import json
import os
import zipfile

from sepconv import _options
from sepconv._atomic import write_text


class UsageError(ValueError):
    """A bad command line; printed as one line, exit code 2."""

    def __init__(self, message, prog="sepconv"):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse, with errors raised as `UsageError` (one line) instead of usage + exit."""

    def error(self, message):
        # argparse prefixes "argument --flag: "; our messages name the flag already.
        head, _, rest = message.partition(": ")
        if head.startswith("argument ") and rest.startswith(head[len("argument ") :].split("/")[0]):
            message = rest
        raise UsageError(message, self.prog)


def value_type(flag, parse, check=None):
    """An argparse `type=`: `parse(text, flag)`, then `check(value, flag)`; errors name `flag`."""
    return _type(flag.lstrip("-").replace("-", "_"), flag, parse, check)


def _type(field_name, flag, parse, check):

    def convert(text):
        try:
            value = parse(text, flag)
            return value if check is None else check(value, flag)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = field_name
    return convert


def add_options(parser, config_class, skip=(), default_label="default"):
    """Adds one flag per field of `config_class` that has one (defaults None: "not given").

    `--help` shows each field's default as "(<default_label> VALUE)".
    """
    for field in _options.flag_fields(config_class):
        if field.name in skip:
            continue
        meta = field.metadata
        flag = _options.flag_name(field)
        default = field.default if field.default is not dataclasses.MISSING else None
        shown = f" ({default_label} {_show(default)})" if default not in (None, ()) else ""
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=meta["help"] + shown)
        elif meta["nargs"]:
            # Each value is parsed alone; the field's check runs on all of them in `options_from_args`.
            parser.add_argument(flag, nargs=meta["nargs"], metavar=meta["metavar"], help=meta["help"] + shown,
                                type=_type(field.name, flag, meta["parse"], None))  # fmt: skip
        else:
            parser.add_argument(flag, metavar=meta["metavar"], help=meta["help"] + shown,
                                type=_type(field.name, flag, meta["parse"], meta["check"]))  # fmt: skip


def _dest(field):
    return _options.flag_name(field)[2:].replace("-", "_")


def _show(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    return " ".join(map(str, value)) if isinstance(value, tuple) else value


def options_from_args(args, config_class, skip=()):
    """field name -> value for the flags of `config_class` given on the command line."""
    given = {}
    for field in _options.flag_fields(config_class):
        value = getattr(args, _dest(field), None)
        if field.name in skip or value is None:
            continue
        if field.metadata["nargs"]:
            value = field.metadata["check"](value, _options.flag_name(field))
        given[field.name] = value
    return given


def given_flags(args, config_class):
    """The flags of `config_class` given on the command line, as typed."""
    given = options_from_args(args, config_class)
    return [_options.flag_name(f) for f in _options.flag_fields(config_class) if f.name in given]


# --- values --------------------------------------------------------------------------------


def parse_size(text, flag, rank=2):
    """Parses "32" or "32x32" into a tuple of `rank` positive ints."""
    parts = str(text).lower().split("x")
    if len(parts) not in (1, rank):
        raise ValueError(f"{flag} must be N or {'x'.join(['N'] * rank)}. Received: {flag}={text}")
    sizes = parse_shape(text, flag, example="x".join(["3"] * rank))
    return sizes * rank if len(sizes) == 1 else sizes


def parse_shape(text, flag="--input-shape", example="32x32x3"):
    """Parses "32x32x3" into (32, 32, 3)."""
    try:
        shape = tuple(int(part) for part in str(text).lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(dim <= 0 for dim in shape):
        raise ValueError(f"{flag} must be positive integers joined by 'x', e.g. {example}. Received: {flag}={text}")
    return shape


def load_model(path, argument="MODEL", unsafe=False):
    """A model from a `.keras` file; Keras' safe mode unless `unsafe`."""
    import keras

    import sepconv.layers  # noqa: F401  (registers sepconv's layers for deserialization)

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such model file. Received: {argument}={path}")
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        # Keras reports a foreign or damaged file with any of these; say which file, in one line.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = " (pass --unsafe to load it, only if you trust the file)" if "safe_mode" in str(error) else ""
        raise ValueError(
            f"Not a loadable Keras model file (.keras): {reason}{hint}. Received: {argument}={path}"
        ) from error


def console(width=160):
    """A Rich console; when the output is not a terminal (logs, pipes), tables get a fixed width
    and lines of text are never broken."""
    from rich.console import Console

    output = Console()
    return output if output.is_terminal else Console(width=width, soft_wrap=True)  # lines unbroken, for grep


def emit_json(result, output=None, stdout=True):
    """Prints `result` as JSON and/or writes it atomically to `output`."""
    text = json.dumps(result, indent=2) + "\n"
    if output:
        folder = os.path.dirname(os.path.abspath(output))
        os.makedirs(folder, exist_ok=True)
        write_text(output, text)
    if stdout:
        print(text, end="")
