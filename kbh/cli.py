"""`kbh` command: argument parsing and dispatch.

Each part registers its own sub-commands (`register(sub, bench)`), and handlers are imported only when their
command runs, so `kbh stats` never loads torch or Qt.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
        rc = int(args.func(args) or 0)
        sys.stdout.flush()
        return rc
    except KbhError as e:
        print(f"kbh: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`kbh stats | head`): stop quietly, with the shell's SIGPIPE status.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # what the code did not expect from the operating system still gets one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"kbh: error: {where}{e.strerror or one_line(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kbh: interrupted", file=sys.stderr)
        return 130


def one_line(message: str) -> str:
    """An error's message on one line; from a DataLoader worker, the original error's own line (torch wraps it
    in a traceback)."""
    if "Original Traceback" in message:
        last = [ln for ln in message.splitlines() if ln.strip()][-1]
        return last.split("KbhError: ", 1)[-1]
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
