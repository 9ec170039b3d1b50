"""`kbh bench drive`: the Recurrent U-Net paper's Table 4 on DRIVE retinal vessels (Staal et al. 2004), with
kbh's own commands, one recipe for every model, and scores per iteration at full resolution.

    kbh bench drive --out runs/drive [--models unet-g,rec-simple,...] [--steps 600] [--jobs 2]

1. `kbh import WS DRIVE --layout drive`: 40 images, each its own person (21-40 training, 01-20 test).
2. `kbh split WS --manifest data_manifests/drive.json --size 584x565`: the committed protocol (written by
   `--write-manifest`): 16 training images train, 4 (a seeded choice) validate, the 20 test images test. Full
   resolution, so the test scores are at the images' own size.
3. Per model `kbh train` with the same recipe (random crops, batch, LR, steps, N = 3, alpha) and validation
   every --eval-every steps (the curve of val mIoU against steps, per iteration t).
4. Every checkpoint on the test split at t = 1..5: mIoU, mean recall, mean precision and mean F1 of the two
   classes (the paper's Table 4), over the whole image and inside the field-of-view disc (DRIVE's
   test/mask/NN_test_mask.gif, read here: the workspace does not store it).

Writes OUT/drive.json, OUT/drive.md (the table, next to the paper's figures) and OUT/drive_curves.png (val mIoU
against steps per model). Finished runs in OUT are reused, interrupted ones resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kbh.atomic_file import atomic_path, atomic_write_bytes

from .fresh_process import run_kbh as kbh
from .fresh_process import train_once

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "drive"
MANIFEST = ROOT / "data_manifests" / "drive.json"
SIZE = "584x565"  # DRIVE's own size (height x width)
MODELS = ("unet-g", "rec-simple", "rec-last", "rec-middle", "sru0", "dru4")
METRICS = ("miou", "mean_recall", "mean_precision", "mean_f1")
# The paper's Table 4 (DRIVE): mIoU, mRec, mPrec, mF1 where given.
PAPER = {"unet-g": (0.800, 0.897, 0.868, 0.882), "rec-middle": (0.818, None, None, None),
         "rec-simple": (0.814, None, None, None), "rec-last": (0.819, None, None, None),
         "dru4": (0.821, 0.902, 0.891, 0.896)}
VAL_SEED, VAL_COUNT = 0, 4


def drive_manifest() -> dict:
    """The protocol: training images 21-40 minus a seeded choice of 4 for validation; test images 01-20."""
    from kbh.manifest import build_manifest
    from kbh.workspace import frame_key

    training = [f"{n:02d}" for n in range(21, 41)]
    val = sorted(np.random.default_rng(VAL_SEED).choice(training, VAL_COUNT, replace=False).tolist())
    groups = {"train": [p for p in training if p not in val], "val": val, "test": [f"{n:02d}" for n in range(1, 21)]}
    splits = {name: {"persons": set(ps), "sequences": set(ps), "frame_ids": [frame_key(p, p, 0) for p in ps]}
              for name, ps in groups.items()}
    m = build_manifest(name="drive", unit="person", seed=VAL_SEED, requested=None, splits=splits,
                       algorithm=f"DRIVE protocol: the 20 test images are the test split; of the 20 training images "
                                 f"{VAL_COUNT} (numpy default_rng({VAL_SEED}).choice) validate, the rest train",
                       extra={"source_note": "import with `kbh import WS DRIVE --layout drive`"})
    m["created"] = None  # a fixed protocol: byte-stable file
    return m


def fov_masks(data: Path, persons: list[str]) -> dict[str, np.ndarray]:
    """Field-of-view disc per test image (True inside)."""
    from kbh.imageio import read_image

    out = {}
    for p in persons:
        path = data / "test" / "mask" / f"{p}_test_mask.gif"
        out[p] = read_image(path)[..., 0] > 127
    return out


def score_checkpoint(checkpoint: Path, shards: Path, fov: dict[str, np.ndarray], iterations: int) -> dict:
    """Scores per iteration t = 1..iterations on the test split, whole image and inside the field of view."""
    import torch

    from training.checkpoint import load_checkpoint, model_from_checkpoint
    from training.data import ShardDataset
    from training.inference import predict_probs
    from training.metrics import confusion, scores_from_confusion

    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = model_from_checkpoint(ckpt).eval()
    norm = ckpt["normalization"]
    data = ShardDataset(shards, "test", mean=norm["mean"], std=norm["std"])
    its = model.iterations_to_run(iterations)
    whole = [torch.zeros(2, 2, dtype=torch.int64) for _ in range(its)]
    inside = [torch.zeros(2, 2, dtype=torch.int64) for _ in range(its)]
    with torch.inference_mode():
        for i in range(len(data)):
            item, person = data[i], str(data.raw(i)["person_id"])
            gt = item["mask"]
            region = torch.from_numpy(fov[person])
            for t, prob in enumerate(predict_probs(model, item["image"][None], its)):
                pred = (prob[0] > 0.5).long()
                whole[t] += confusion(pred, gt)
                inside[t] += confusion(pred[region], gt[region])
    rows = []
    for t in range(its):
        a, b = scores_from_confusion(whole[t]), scores_from_confusion(inside[t])
        rows.append({"iteration": t + 1, **{k: a[k] for k in METRICS}, **{f"fov_{k}": b[k] for k in METRICS}})
    return {"checkpoint": str(checkpoint), "step": int(ckpt["step"]), "per_iteration": rows}


def val_curve(run: Path) -> list[dict]:
    """Validation records of a run's log: step and mIoU per iteration."""
    rows = []
    for line in (run / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "eval":
            rows.append({"step": r["step"], "miou": [x["miou"] for x in r["per_iteration"]]})
    return rows


def train_one(a, model: str, shards: Path, out: Path) -> tuple[Path, int]:
    """The model's run folder and its training wall seconds (a finished run is reused)."""
    run = out / model
    run.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // a.jobs))}
    with open(run / "console.log", "a") as log:
        seconds = train_once(run, "--model", model, "--data", str(shards), "--steps", str(a.steps), "--crop",
                             a.crop, "--batch", str(a.batch), "--lr", str(a.lr), "--iterations", str(a.iterations),
                             "--alpha", str(a.alpha), "--seed", str(a.seed), "--workers", "0", "--eval-every",
                             str(a.eval_every), *a.train_extra, env=env, log=log)
    return run, seconds


def fmt(v) -> str:
    return "" if v is None else f"{v:.3f}"


def table(results: dict, t_max: int) -> str:
    lines = ["| model | params | steps | train s | t | mIoU | mRec | mPrec | mF1 | FOV mIoU | FOV mF1 | paper mIoU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for row in r["test"]["per_iteration"][:t_max]:
            paper = PAPER.get(name, (None,))[0] if row["iteration"] == 1 or r["recurrent"] else None
            lines.append(f"| {name} | {r['parameters']:,} | {r['test']['step']} | {r['train_seconds']} | "
                         f"{row['iteration']} | " + " | ".join(fmt(row[k]) for k in METRICS) +
                         f" | {fmt(row['fov_miou'])} | {fmt(row['fov_mean_f1'])} | {fmt(paper)} |")
    return "\n".join(lines)


def plot_curves(results: dict, path: Path, t_max: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for name, r in results.items():
        steps = [c["step"] for c in r["val_curve"]]
        first = [c["miou"][0] for c in r["val_curve"]]
        last = [c["miou"][-1] for c in r["val_curve"]]
        (line,) = axes[0].plot(steps, last, marker="o", ms=3, label=name)
        if r["recurrent"]:
            axes[0].plot(steps, first, ls=":", color=line.get_color())
        final = r["test"]["per_iteration"]
        if r["recurrent"]:
            axes[1].plot([x["iteration"] for x in final], [x["miou"] for x in final], marker="o", ms=3, label=name,
                         color=line.get_color())
        else:  # one output, whatever t: a flat line for comparison
            axes[1].plot([1, t_max], [final[0]["miou"]] * 2, ls="--", label=f"{name} (not recurrent)",
                         color=line.get_color())
    axes[0].set(xlabel="training step", ylabel="val mIoU (solid: last iteration, dotted: t=1)",
                title="DRIVE: validation mIoU against steps")
    axes[1].set(xlabel="iteration t", ylabel="test mIoU (whole image, 584x565)", title="DRIVE test: per iteration",
                xticks=list(range(1, t_max + 1)))
    for name, p in PAPER.items():
        if name in results:
            axes[1].axhline(p[0], ls="--", lw=0.6, color="grey")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kbh bench drive", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/drive"))
    p.add_argument("--data", type=Path, default=DATA, help="the DRIVE folder (training/, test/)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--crop", default="192x192", help="training crops HxW")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--iterations", type=int, default=3, help="N of the recurrent models in training")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-iterations", type=int, default=5, help="test at t = 1..T")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (2 cores shared among them)")
    p.add_argument("--train-extra", default="", help="further `kbh train` options for every model, quoted")
    p.add_argument("--write-manifest", action="store_true", help="(re)write data_manifests/drive.json and stop")
    a = p.parse_args(argv)
    a.train_extra = a.train_extra.split()
    if a.write_manifest:
        from kbh.manifest import write_manifest

        write_manifest(MANIFEST, drive_manifest())
        print(f"wrote {MANIFEST}")
        return 0
    if not (a.data / "training" / "images").is_dir():
        print(f"kbh bench drive: no DRIVE data at {a.data}", file=sys.stderr)
        return 1
    out = a.out
    ws, shards = out / "ws", out / "shards"
    if not (ws / "kbh.sqlite").exists():
        kbh("init", str(ws))
        kbh("import", str(ws), str(a.data), "--layout", "drive", "--quiet")
    if not (shards / "manifest.json").exists():
        kbh("split", str(ws), "--manifest", str(MANIFEST), "--size", SIZE, "--out", str(shards), "--no-progress")
    models = a.models.split(",")
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        runs = dict(zip(models, pool.map(lambda m: train_one(a, m, shards, out), models)))

    from training.models import build_model, count_parameters

    manifest = json.loads((shards / "manifest.json").read_text())
    fov = fov_masks(a.data, manifest["splits"]["test"]["persons"])
    results = {}
    for name, (run, seconds) in runs.items():
        net = build_model(name)
        results[name] = {"parameters": count_parameters(net), "recurrent": net.recurrent,
                         "train_seconds": seconds,
                         "val_curve": val_curve(run),
                         "test": score_checkpoint(run / "best.pt", shards, fov, a.eval_iterations)}
        best = results[name]["test"]["per_iteration"]
        print(f"{name}: test mIoU t=1..{len(best)}: " + ", ".join(f"{r['miou']:.3f}" for r in best), flush=True)
    setup = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    setup.update(manifest_id=manifest["manifest_id"], load_average=os.getloadavg())
    atomic_write_bytes(out / "drive.json", (json.dumps({"setup": setup, "results": results}, indent=1) + "\n").encode())
    text = table(results, a.eval_iterations)
    atomic_write_bytes(out / "drive.md", (text + "\n").encode())
    plot_curves(results, out / "drive_curves.png", a.eval_iterations)
    print(text)
    print(f"wrote {out / 'drive.json'}, {out / 'drive.md'}, {out / 'drive_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
