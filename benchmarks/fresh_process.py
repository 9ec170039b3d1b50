"""Run one function in a fresh interpreter (multiprocessing's spawn), for measurements that a long-lived process
would spoil: peak resident memory (ru_maxrss only grows), state left by an earlier model, or an OpenMP runtime
that has already read its environment. The one child-process mechanism the benchmarks use."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def _call_with_env(env: dict[str, str], fn, args: tuple):
    os.environ.update(env)  # before fn imports torch: OpenMP reads OMP_* once, when it starts
    return fn(*args)


def run_fresh(fn, *args, env: dict[str, str] | None = None, timeout: float | None = None, what: str = "child"):
    """fn(*args) in a new interpreter with `env` added to its environment; returns its (picklable) result.
    `fn` must be a module-level function. A failure in the child becomes a RuntimeError naming `what`."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_call_with_env, dict(env or {}), fn, args).result(timeout=timeout)
        except Exception as e:  # noqa: BLE001 - one line naming what failed
            raise RuntimeError(f"{what} failed: {type(e).__name__}: {e}") from None


def run_kbh(*args: str, env: dict | None = None, log=None, echo: bool = True) -> None:
    """One `kbh` command in a child process (so several runs can share the cores, each with its own thread
    count): output to `log` (a file) or the console; a failure raises CalledProcessError."""
    if echo:
        print("+ kbh " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "kbh.cli", *args], check=True, env=env, stdout=log,
                   stderr=subprocess.STDOUT if log else None)


def train_once(run, *train_args: str, env: dict | None = None, log=None, echo: bool = True) -> int:
    """`kbh train --out RUN ARGS` unless RUN already finished: an interrupted run (last.pt, no
    train_seconds.txt) resumes. Records and returns the wall seconds the training took."""
    from pathlib import Path

    run = Path(run)
    done = run / "train_seconds.txt"
    if not done.exists():
        t0 = time.time()
        resume = ["--resume"] if (run / "last.pt").exists() else []
        run_kbh("train", "--out", str(run), *train_args, *resume, env=env, log=log, echo=echo)
        done.write_text(f"{time.time() - t0:.0f}\n")
    return int(done.read_text())
