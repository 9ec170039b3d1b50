"""Train unet-g, rec-simple, sru0 and dru4 with one budget on the real HGR1 frames, split by person, and print
one markdown table of test scores per iteration (benchmarks/RESULTS.md).

    kbh bench hgr1-models --out /tmp/hgr1_bench --seeds 0,1,2 --jobs 4 [--steps 150]

Steps: `kbh init` + `kbh import` (HGR1 masks are inverted: hand = 0, hence --mask-invert; person = idNN,
sequence = gesture of that person), `kbh split --by-person 60/15/25`, then per model `kbh train` (same steps,
batch, LR) for each training seed and `kbh eval --split test --iterations T`. Runs already finished in OUT are
reused, interrupted ones resumed (delete OUT to start over); the table is rebuilt from the eval JSON files.
Each run's console output goes to OUT/MODEL-sSEED/console.log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .fresh_process import run_kbh as kbh
from .fresh_process import train_once

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hgr1"
MODELS = ("unet-g", "rec-simple", "sru0", "dru4")
METRICS = ("mean_recall", "mean_precision", "mean_f1", "bep")


def train_and_eval(a, model: str, seed: int, shards: Path, out: Path) -> dict:
    """One run: train (or resume / reuse) and evaluate on the test split; returns the eval report."""
    run = out / f"{model}-s{seed}"
    run.mkdir(parents=True, exist_ok=True)
    # One thread per run when several run at once, so they do not oversubscribe the cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if a.jobs > 1 else None
    with open(run / "console.log", "a") as log:
        seconds = train_once(run, "--model", model, "--data", str(shards), "--steps", str(a.steps), "--batch",
                             str(a.batch), "--lr", str(a.lr), "--seed", str(seed), "--workers", str(a.workers),
                             *a.train_extra.split(), "--eval-every", str(max(1, a.steps // 4)), env=env, log=log)
        report = run / "eval_test.json"
        kbh("eval", "--checkpoint", str(run / "best.pt"), "--data", str(shards), "--split", "test", "--iterations",
            str(a.eval_iterations), "--json", str(report), "--samples", str(run / "samples_test.png"), env=env, log=log)
    r = json.loads(report.read_text())
    r["train_seconds"] = seconds
    return r


def mean_sd(values) -> str:
    v = np.array([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return ""
    return f"{v.mean():.3f}" if len(v) == 1 else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kbh bench hgr1-models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/hgr1_bench")
    p.add_argument("--data", default=str(DATA), help="HGR1 folder with images/ and masks/")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1,2 (the person split stays seed 0)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (each with one thread)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--size", default="96x128", help="HxW of the shards")
    p.add_argument("--eval-iterations", type=int, default=5)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--train-extra", default="", help="further `kbh train` options for every run, quoted")
    a = p.parse_args(argv)
    out, data = Path(a.out), Path(a.data)
    if not (data / "images").is_dir():
        print(f"no HGR1 data at {data}", file=sys.stderr)
        return 1
    ws, shards = out / "ws", out / "shards"
    if not (ws / "kbh.sqlite").exists():
        kbh("init", str(ws))
        kbh("import", str(ws), str(data / "images"), "--masks", str(data / "masks"), "--mask-invert", "--quiet",
            "--person-regex", r"hgr1_(id\d+)", "--sequence-regex", r"^(.+_hgr1_id\d+)_", "--index-regex", r"_(\d+)$")
    if not (shards / "manifest.json").exists():
        kbh("split", str(ws), "--by-person", "60/15/25", "--seed", "0", "--size", a.size, "--out", str(shards),
            "--name", "hgr1-by-person", "--no-progress")
    models, seeds = a.models.split(","), [int(s) for s in a.seeds.split(",")]
    jobs = [(m, s) for s in seeds for m in models]
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        reports = dict(zip(jobs, pool.map(lambda job: train_and_eval(a, job[0], job[1], shards, out), jobs)))

    manifest = json.loads((shards / "manifest.json").read_text())
    sp = manifest["splits"]
    print(f"\nHGR1 split by person (manifest {manifest['manifest_id']}): train {', '.join(sp['train']['persons'])} "
          f"({sp['train']['frame_count']} frames), val {', '.join(sp['val']['persons'])} ({sp['val']['frame_count']}), "
          f"test {', '.join(sp['test']['persons'])} ({sp['test']['frame_count']}); size {a.size}; {a.steps} steps, "
          f"batch {a.batch}, lr {a.lr}; seeds {a.seeds}; best.pt chosen by val mIoU; mean ± sd over seeds\n")
    print(f"| model | test mIoU t=1 | t=2 | t=3 | t={a.eval_iterations} | mRecall (trained T) | mPrecision | mF1 | BEP "
          f"| mIoU per seed (trained T) | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in models:
        rs = [reports[(m, s)] for s in seeds]
        trained = rs[0]["trained_iterations"]

        def at(r, t):
            per = r["per_iteration"]
            return per[min(t, len(per)) - 1] if t <= len(per) else None

        cols = []
        for t in (1, 2, 3, a.eval_iterations):
            cols.append(mean_sd([at(r, t)["miou"] for r in rs]) if at(rs[0], t) else "")
        cols += [mean_sd([at(r, trained)[k] for r in rs]) for k in METRICS]
        per_seed = ", ".join(f"{at(r, trained)['miou']:.3f}" for r in rs)
        secs = mean_sd([r["train_seconds"] for r in rs]).split(".")[0]
        print(f"| {m} | " + " | ".join(cols) + f" | {per_seed} | {secs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
