"""`kbh bench iterations`: why a recurrent model's iterations help or hurt. Trains one model under recipe variants
that differ in one thing each, on the same shards, and scores the final weights (last.pt, no selection) on the
validation split at t = 1..T.

    kbh bench iterations --data runs/drive/shards --model dru4 --out runs/study [--variants base,stop-grad,...]
        [--steps 300] [--crop 192x192] [--jobs 2]

Variants (docs/training.md, "Iterations that refine"): the gradient through the fed-back mask, alpha (the
weight alpha^(N-t) of iteration t), the s0/h0 initialisation, the learning rate, the length of training, and
the number of iterations N trained. Writes OUT/iterations.json and OUT/iterations.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kbh.atomic_file import atomic_write_bytes

from .fresh_process import run_kbh, train_once

BEFORE = ["--alpha", "0.4"]  # the recipe the study started from, where a variant does not set alpha itself
VARIANTS = {
    "base": [],
    "stop-grad": ["--stop-mask-gradient"],
    "alpha-1": ["--alpha", "1.0"],
    "alpha-0.1": ["--alpha", "0.1"],
    "init-zeros": ["--model-arg", "init=zeros"],
    "lr-x3": ["lr*3"],
    "lr-/3": ["lr/3"],
    "steps-x2": ["steps*2"],
    "n-5": ["--iterations", "5"],
    "stop-grad+alpha-1": ["--stop-mask-gradient", "--alpha", "1.0"],
    "random-n-5": ["--iterations", "5", "--random-iterations"],
    "random-n-5+stop-grad": ["--iterations", "5", "--random-iterations", "--stop-mask-gradient"],
    "alpha-1+random-n-5": ["--alpha", "1.0", "--iterations", "5", "--random-iterations"],
    "alpha-1+lr-x3": ["--alpha", "1.0", "lr*3"],
}


def run_variant(a, name: str) -> dict:
    run = a.out / f"{a.model}-{name}"
    run.mkdir(parents=True, exist_ok=True)
    steps, lr, extra = a.steps, a.lr, []
    for item in VARIANTS[name]:
        if item.startswith("lr*") or item.startswith("lr/"):
            lr = lr * float(item[3:]) if item[2] == "*" else lr / float(item[3:])
        elif item.startswith("steps*"):
            steps = int(steps * float(item[6:]))
        else:
            extra.append(item)
    if "--alpha" not in extra:
        extra = BEFORE + extra
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // a.jobs))}
    report = run / "eval_val.json"
    with open(run / "console.log", "a") as log:
        if not (run / "train_seconds.txt").exists():
            print(f"+ {name}: kbh train --model {a.model} {' '.join(extra)} (lr {lr:g}, {steps} steps)", flush=True)
        seconds = train_once(run, "--model", a.model, "--data", str(a.data), "--steps", str(steps), "--batch",
                             str(a.batch), "--lr", str(lr), "--seed", str(a.seed), "--workers", "0", "--eval-every",
                             str(steps), *(["--crop", a.crop] if a.crop else []), *extra, env=env, log=log,
                             echo=False)
        if not report.exists():
            run_kbh("eval", "--checkpoint", str(run / "last.pt"), "--data", str(a.data), "--split", "val",
                    "--iterations", str(a.eval_iterations), "--json", str(report), env=env, log=log, echo=False)
    per_t = json.loads(report.read_text())["per_iteration"]
    return {"variant": name, "changes": VARIANTS[name], "lr": lr, "steps": steps,
            "train_seconds": seconds,
            "val_miou": [r["miou"] for r in per_t]}


def table(rows: list[dict]) -> str:
    t_max = max(len(r["val_miou"]) for r in rows)
    head = "| variant | change | " + " | ".join(f"t={t}" for t in range(1, t_max + 1)) + " | t3 - t1 | best t | train s |"
    lines = [head, "|" + "---|" * (t_max + 5)]
    for r in rows:
        m = r["val_miou"]
        change = " ".join(r["changes"]) or "(the recipe before the study: alpha 0.4, lr 0.01)"
        lines.append(f"| {r['variant']} | {change} | " + " | ".join(f"{v:.4f}" for v in m) +
                     f" | {m[min(2, len(m) - 1)] - m[0]:+.4f} | {1 + max(range(len(m)), key=m.__getitem__)} | "
                     f"{r['train_seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kbh bench iterations", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="shard folder with train and val splits")
    p.add_argument("--model", default="dru4")
    p.add_argument("--out", type=Path, default=Path("runs/study"))
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--crop", default=None, help="training crops HxW (e.g. 192x192 on DRIVE)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-iterations", type=int, default=5)
    p.add_argument("--jobs", type=int, default=1)
    a = p.parse_args(argv)
    names = a.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    a.out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        rows = list(pool.map(lambda n: run_variant(a, n), names))
    text = table(rows)
    setup = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    setup["load_average"] = os.getloadavg()
    atomic_write_bytes(a.out / "iterations.json", (json.dumps({"setup": setup, "rows": rows}, indent=1) + "\n").encode())
    atomic_write_bytes(a.out / "iterations.md", (text + "\n").encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
