"""`make demo`: the whole loop on synthetic data, from nothing, with progress and a short report.

Each step calls the same `kbh` sub-command a person would type, so the demo is also a smoke test of the CLI.
Steps whose part is not installed are reported as skipped, not faked.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

from .cli import main as kbh


def step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}\n$ kbh {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = kbh(argv)
    if rc != 0:
        sys.exit(f"demo: step '{title}' failed with exit code {rc}")
    print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


def run(out: Path, persons: int, frames: int, steps: int) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ws, shards, run_dir = out / "workspace", out / "shards", out / "run"
    t0 = time.perf_counter()
    step("synthesize a workspace", ["synth", str(ws), "--persons", str(persons), "--sequences-per-person", "2",
                                    "--frames", str(frames), "--seed", "0"])
    step("split by person 20/20/60", ["split", str(ws), "--by-person", "20/20/60", "--seed", "0",
                                      "--out", str(shards), "--name", "demo"])
    step("verify the shards", ["verify", str(shards)])
    step("statistics", ["stats", str(shards)])
    report = [f"workspace: {ws}", f"shards: {shards}"]
    if importlib.util.find_spec("torch") and importlib.util.find_spec("training.train"):
        step("train sru0 briefly", ["train", "--model", "sru0", "--data", str(shards), "--out", str(run_dir),
                                    "--steps", str(steps), "--batch", "4", "--eval-every", str(max(1, steps // 2))])
        step("evaluate per iteration on the test persons",
             ["eval", "--checkpoint", str(run_dir / "best.pt"), "--data", str(shards), "--split", "test",
              "--iterations", "5", "--json", str(run_dir / "eval_test.json"),
              "--samples", str(run_dir / "refinement.png")])
        report += [f"training curve: {run_dir / 'curves.png'}",
                   f"mIoU per iteration: {run_dir / 'miou_per_iteration.png'}",
                   f"refinement over iterations: {run_dir / 'refinement.png'}"]
    else:
        print("\n(training is not installed: skipped train/eval)")
    print(f"\n== report ({time.perf_counter() - t0:.0f} s)\n" + "\n".join(f"  {r}" for r in report))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kbh.demo", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--persons", type=int, default=10)
    p.add_argument("--frames", type=int, default=12, help="frames per sequence")
    p.add_argument("--steps", type=int, default=150, help="training steps")
    args = p.parse_args(argv)
    run(args.out, args.persons, args.frames, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
