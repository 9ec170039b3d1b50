"""`kbh` command: argument parsing and dispatch.

Each part registers its own sub-commands through the `kbh.commands` entry-point group (pyproject.toml): a
`register(subparsers, bench_subparsers)` function that sets `func` on its parsers. The core names no layer above
it, and a part that is not installed simply has no commands. Handlers import their heavy modules only when their
command runs, so `kbh stats` never loads torch or Qt.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points

from . import __version__
from .errors import KbhError

COMMANDS_GROUP = "kbh.commands"
CORE_FIRST = ("dataset", "split")  # the core's commands lead the help; the others follow by name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kbh", description="Keyboard-hand segmentation toolkit")
    parser.add_argument("--version", action="version", version=f"kbh {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    found = sorted(entry_points(group=COMMANDS_GROUP),
                   key=lambda e: (CORE_FIRST.index(e.name) if e.name in CORE_FIRST else len(CORE_FIRST), e.name))
    for ep in found:
        try:
            register = ep.load()
        except ModuleNotFoundError as e:
            if not ep.value.startswith(f"{e.name}.") and ep.value.split(":")[0] != e.name:
                raise  # a real import error inside the part, not a part that is absent
            continue
        register(sub, bench_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "forward_args", False):
        args.forwarded = extra  # a command whose options belong to the module it runs (benchmarks, the demo)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
