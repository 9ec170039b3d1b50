"""Train unet-g, rec-simple, sru0 and dru4 with one budget on the real HGR1 frames, split by person, and print
one markdown table of test scores per iteration (the "Done means" of issue 3).

    .venv/bin/python benchmarks/hgr1_models.py --out /tmp/hgr1_bench [--steps 200] [--size 120x160]

Steps: `kbh init` + `kbh import` (HGR1 masks are inverted: hand = 0, hence --mask-invert; person = idNN,
sequence = gesture of that person), `kbh split --by-person 60/15/25`, then per model `kbh train` (same steps,
batch, LR, seed) and `kbh eval --split test --iterations T`. Existing runs in OUT are reused (delete OUT to
start over); the table is rebuilt from the eval JSON files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hgr1"
MODELS = ("unet-g", "rec-simple", "sru0", "dru4")


def kbh(*args: str) -> None:
    cmd = [sys.executable, "-m", "kbh.cli", *args]
    print("+ kbh " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/hgr1_bench")
    p.add_argument("--data", default=str(DATA), help="HGR1 folder with images/ and masks/")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--size", default="120x160", help="HxW of the shards")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-iterations", type=int, default=5)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
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
        kbh("split", str(ws), "--by-person", "60/15/25", "--seed", str(a.seed), "--size", a.size, "--out", str(shards),
            "--name", "hgr1-by-person", "--no-progress")
    rows = []
    for model in a.models.split(","):
        run = out / model
        if not (run / "best.pt").exists():
            t0 = time.time()
            resume = ["--resume"] if (run / "last.pt").exists() else []
            kbh("train", "--model", model, "--data", str(shards), "--out", str(run), "--steps", str(a.steps),
                "--batch", str(a.batch), "--lr", str(a.lr), "--seed", str(a.seed), "--workers", str(a.workers),
                "--eval-every", str(max(1, a.steps // 4)), *resume)
            (run / "train_seconds.txt").write_text(f"{time.time() - t0:.0f}\n")
        report = run / "eval_test.json"
        kbh("eval", "--checkpoint", str(run / "best.pt"), "--data", str(shards), "--split", "test",
            "--iterations", str(a.eval_iterations), "--json", str(report), "--samples", str(run / "samples_test.png"))
        r = json.loads(report.read_text())
        secs = (run / "train_seconds.txt").read_text().strip() if (run / "train_seconds.txt").exists() else "?"
        rows.append((model, r, secs))

    manifest = json.loads((shards / "manifest.json").read_text())
    print(f"\nHGR1 by person ({manifest.get('manifest_id')}): test persons "
          f"{', '.join(manifest['splits']['test']['persons']) if 'splits' in manifest else '?'}; "
          f"{a.steps} steps, batch {a.batch}, lr {a.lr}, size {a.size}, seed {a.seed}\n")
    fmt = lambda v: "nan" if v is None else f"{v:.3f}"  # noqa: E731
    print("| model | trained T | best val step | test mIoU t=1 | t=2 | t=3 | t=T+ (5) | mRecall | mPrecision | mF1 | BEP | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model, r, secs in rows:
        per = r["per_iteration"]
        last = per[min(r["trained_iterations"], len(per)) - 1]
        m = [fmt(per[t]["miou"]) if t < len(per) else "" for t in range(3)]
        beyond = fmt(per[-1]["miou"]) if len(per) > r["trained_iterations"] else ""
        print(f"| {model} | {r['trained_iterations']} | {r['step']} | {m[0]} | {m[1]} | {m[2]} | {beyond} | "
              f"{fmt(last['mean_recall'])} | {fmt(last['mean_precision'])} | {fmt(last['mean_f1'])} | {fmt(last['bep'])} | {secs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
