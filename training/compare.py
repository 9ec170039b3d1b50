"""`kbh compare`: train two or three candidate models on the same shards with the same recipe, score each on the
validation split at t = 1..T and time it on this machine, and say which to use for pre-annotation.

The choice: the highest validation mIoU at the model's best iteration; a candidate within --tolerance of it that
runs faster is preferred (pre-annotation runs over every unlabeled frame). Test frames are never looked at.
Writes OUT/compare.json and prints the table and the `kbh predict` command for the choice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from kbh.atomic_file import atomic_write_bytes
from kbh.errors import KbhError

from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import ShardDataset
from .evaluate import score_dataset


def frames_per_second(model, size: tuple[int, int], iterations: int, seconds: float = 1.0) -> float:
    """Batch-1 inference speed at the shard size on this machine (median of three timed rounds)."""
    x = torch.randn(1, 3, *size)
    rates = []
    with torch.inference_mode():
        model(x, iterations=iterations)  # warm-up
        for _ in range(3):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 3 or n == 0:
                model(x, iterations=iterations)
                n += 1
            rates.append(n / (time.perf_counter() - t0))
    return sorted(rates)[1]


def choose(rows: list[dict], tolerance: float) -> dict:
    """The best validation mIoU, or a faster candidate within `tolerance` of it."""
    best = max(r["val_miou"] for r in rows)
    close = [r for r in rows if r["val_miou"] >= best - tolerance]
    return max(close, key=lambda r: r["fps"])


def run_compare(args) -> int:
    from kbh.cli import main as kbh  # the candidates train exactly as `kbh train` would

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if len(models) < 2:
        raise KbhError(f"--models {args.models!r}: give at least two candidates")
    out = Path(args.out)
    rows = []
    for name in models:
        run = out / name
        if not (run / "best.pt").exists():
            argv = ["train", "--model", name, "--data", str(args.data), "--out", str(run), "--steps", str(args.steps),
                    "--batch", str(args.batch), "--lr", str(args.lr), "--seed", str(args.seed),
                    "--workers", str(args.workers), "--eval-every", str(max(1, args.steps // 4))]
            if args.crop:
                argv += ["--crop", f"{args.crop[0]}x{args.crop[1]}"]
            if kbh(argv + (["--resume"] if (run / "last.pt").exists() else [])) != 0:
                raise KbhError(f"{run}: training {name} failed")
        ckpt = load_checkpoint(run / "best.pt")
        model = model_from_checkpoint(ckpt).eval()
        norm = ckpt["normalization"]
        val = ShardDataset(args.data, "val", mean=norm["mean"], std=norm["std"])
        per_t = score_dataset(model, val, args.iterations, torch.device("cpu")).results()
        t_best = max(per_t, key=lambda r: r["miou"])
        size = tuple(ckpt["input_size"])
        rows.append({"model": name, "checkpoint": str(run / "best.pt"), "val_miou": t_best["miou"],
                     "iterations": t_best["iteration"], "val_miou_per_t": [r["miou"] for r in per_t],
                     "fps": frames_per_second(model, size, t_best["iteration"]), "size": list(size)})
    pick = choose(rows, args.tolerance)
    print(f"\n{'model':<11} {'val mIoU':>8} {'at t':>4} {'frames/s':>8}  val mIoU t=1..{args.iterations}")
    for r in rows:
        mark = "  <- use" if r is pick else ""
        print(f"{r['model']:<11} {r['val_miou']:8.4f} {r['iterations']:4d} {r['fps']:8.1f}  "
              + ", ".join(f"{v:.3f}" for v in r["val_miou_per_t"]) + mark)
    print(f"\nuse {pick['model']} at t={pick['iterations']} for pre-annotation (best val mIoU, or within "
          f"{args.tolerance} of it and faster):\n  kbh predict WS --checkpoint {pick['checkpoint']} "
          f"--iterations {pick['iterations']}")
    atomic_write_bytes(out / "compare.json", (json.dumps({"rows": rows, "choice": pick["model"],
                                                          "tolerance": args.tolerance}, indent=1) + "\n").encode())
    return 0
