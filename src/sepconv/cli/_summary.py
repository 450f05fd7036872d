"""`sepconv summary`: per-layer parameters, MACs and bytes of a model.

MODEL is a `.keras` file or the name of a built-in model
(`sepconv.models.list_models()`). See `sepconv.analysis.profile_model` for
the counting conventions.
"""

import difflib
import json
import os
import zipfile

from rich.console import Console

from sepconv.cli._count import parse_positive


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "summary",
        help="per-layer parameters, MACs, FLOPs and bytes of a model",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras file or a built-in model name")
    parser.add_argument(
        "--input-shape",
        metavar="HxWxC",
        help="input shape without the batch, e.g. 32x32x3 (default: the model's own)",
    )
    parser.add_argument("--batch-size", default="1", metavar="N", help="samples per forward pass (default 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


def parse_shape(text, flag="--input-shape"):
    """Parses "32x32x3" into (32, 32, 3)."""
    try:
        shape = tuple(int(part) for part in str(text).lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(dim <= 0 for dim in shape):
        raise ValueError(f"{flag} must be positive integers joined by 'x', e.g. 32x32x3. Received: {flag}={text}")
    return shape


def _looks_like_path(text):
    return text.endswith(".keras") or os.sep in text or "/" in text or os.path.exists(text)


def load_model(spec):
    """A model from a `.keras` path or a built-in model name."""
    if _looks_like_path(spec):
        return _load_file(spec)
    return _create_builtin(spec)


def _load_file(path):
    import keras

    import sepconv.layers  # noqa: F401  (registers sepconv's layers for deserialization)

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such model file. Received: MODEL={path}")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"Not a loadable Keras model file (.keras): {reason}. Received: MODEL={path}") from error


def _create_builtin(name):
    from sepconv.models import create_model, list_models

    known = list(list_models())
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name (and not a .keras file). Known models: {', '.join(known)}.{hint} "
            f"Received: MODEL={name}"
        )
    return create_model(name)


def run(args):
    input_shape = parse_shape(args.input_shape) if args.input_shape else None
    batch_size = parse_positive(args.batch_size, "--batch-size")
    model = load_model(args.model)

    from sepconv.analysis import profile_model, render_profile

    profile = profile_model(model, input_shape=input_shape, batch_size=batch_size)
    if args.json:
        print(json.dumps(profile.to_dict(), indent=2))
        return 0
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(render_profile(profile))
    return 0
