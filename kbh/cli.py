"""`kbh` command: argument parsing and dispatch.

Each part registers its own sub-commands (`register(sub, bench)`), and handlers are imported only when their
command runs, so `kbh stats` never loads torch or Qt.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import KbhError

# Modules with `register(subparsers, bench_subparsers)`; each sets `func` on its parsers.
COMMAND_MODULES = ("kbh.cli_dataset", "kbh.cli_split", "training.cli", "training.cli_predict", "training.cli_models",
                   "annotator.cli", "kbh.cli_bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kbh", description="Keyboard-hand segmentation toolkit")
    parser.add_argument("--version", action="version", version=f"kbh {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # a real import error inside the module, not a part that is absent
                raise
            continue
        module.register(sub, bench_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KbhError as e:
        print(f"kbh: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kbh: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
