"""The `sepconv` command line.

Each command lives in `sepconv/cli/_<command>.py` with `add_parser(subparsers)` (which
sets `func`); `COMMANDS` lists them in the order `sepconv --help` shows. Shared helpers
are in `_args.py`. A bad value (`ValueError`, `FileNotFoundError`, a missing optional
package (`ImportError`), or a flag argparse refuses) becomes one line on stderr and exit
code 2; `--debug` shows the traceback.
"""

import sys

from sepconv.cli import _bench, _compare, _convert, _count, _evaluate, _export, _summary, _train
from sepconv.cli._args import Parser, UsageError

COMMANDS = (_count, _summary, _train, _compare, _evaluate, _convert, _export, _bench)


def build_parser():
    parser = Parser(
        prog="sepconv",
        description="Depthwise separable convolutions: count, summarize, train, compare, evaluate, convert, export, "
        "benchmark.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def _keep_freed_memory_on_torch():
    """PyTorch allocates every CPU tensor afresh: `sepconv.kernels.keep_freed_memory`."""
    import keras

    if keras.backend.backend() == "torch":
        from sepconv.kernels import keep_freed_memory

        keep_freed_memory()


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(f"{error.prog}: error: {error}", file=sys.stderr)
        return 2
    try:
        _keep_freed_memory_on_torch()
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, ImportError) as error:
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
