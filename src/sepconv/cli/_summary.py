"""`sepconv summary`: per-layer parameters, MACs and bytes of a model.

MODEL is a `.keras` file or the name of a built-in model
(`sepconv.models.list_models()`). See `sepconv.analysis.profile_model` for
the counting conventions.
"""

import os

from sepconv import _options, _validation
from sepconv.cli import _args


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "summary",
        help="per-layer parameters, MACs, FLOPs and bytes of a model",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras file or a built-in model name")
    parser.add_argument(
        "--input-shape",
        type=_args.value_type("--input-shape", _args.parse_shape),
        metavar="HxWxC",
        help="input shape without the batch, e.g. 32x32x3 (default: the model's own)",
    )
    parser.add_argument(
        "--batch-size",
        default=1,
        type=_args.value_type("--batch-size", _options.parse_int, _validation.positive_int),
        metavar="N",
        help="samples per forward pass (default 1)",
    )
    parser.add_argument(
        "--model-arg",
        nargs="+",
        type=_args.value_type("--model-arg", _options.parse_key_value),
        metavar="KEY=VALUE",
        help="arguments for a built-in model's builder, e.g. channels=64 depth=2 (VALUE a Python literal, else text)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


def _looks_like_path(text):
    return text.endswith(".keras") or os.sep in text or "/" in text or os.path.exists(text)


def load_model(spec, model_kwargs=None):
    """A model from a `.keras` path, or a built-in model name built with `model_kwargs`."""
    if _looks_like_path(spec):
        if model_kwargs:
            raise ValueError(f"--model-arg builds a built-in model; MODEL is a file. Received: MODEL={spec}")
        return _args.load_model(spec, argument="MODEL")
    from sepconv.models import check_model_arguments, check_model_name, create_model

    name = check_model_name(spec, argument="MODEL")
    return create_model(name, **check_model_arguments(name, model_kwargs or {}, argument="--model-arg"))


def run(args):
    model_kwargs = _options.builder_arguments()(args.model_arg, "--model-arg") if args.model_arg else None
    model = load_model(args.model, model_kwargs)

    from sepconv.analysis import profile_model, render_profile

    profile = profile_model(model, input_shape=args.input_shape, batch_size=args.batch_size)
    if args.json:
        _args.emit_json({**profile.to_dict(), **({"model_kwargs": model_kwargs} if model_kwargs else {})})
        return 0
    console = _args.console()
    console.print(render_profile(profile))
    if model_kwargs:
        console.print("Built with " + ", ".join(f"{k}={v!r}" for k, v in model_kwargs.items()) + ".", highlight=False)
    return 0
