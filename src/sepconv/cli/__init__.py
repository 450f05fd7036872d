"""The `sepconv` command line.

Each sub-command lives in its own module ``sepconv/cli/_<command>.py``
exposing ``add_parser(subparsers)`` (which sets ``func`` on its parser); this
file discovers and wires them together.
User errors (``ValueError``, ``TypeError``, ``FileNotFoundError``) become one
line on stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

import argparse
import importlib
import pkgutil
import sys

# The order `sepconv --help` lists the commands in; others follow by name.
_ORDER = ("count", "summary", "train", "compare", "convert", "bench")


def _command_modules():
    names = [m.name[1:] for m in pkgutil.iter_modules(__path__) if m.name.startswith("_")]
    return sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))


class UsageError(ValueError):
    """A bad command-line value; printed as one line, exit code 2."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sepconv",
        description="Depthwise separable convolutions: count, summarize, train, compare, convert, benchmark.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _command_modules():
        module = importlib.import_module(f"sepconv.cli._{name}")
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        if args.debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"sepconv {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sepconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
