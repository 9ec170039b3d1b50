"""PNG plots of a run (training curves, mIoU per iteration) and of sample frames refined over iterations.

Uses matplotlib's object API (Figure, no pyplot state), so it works headless and in worker processes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kbh.atomic_file import atomic_write_bytes


def _save(fig: Figure, path: str | Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(records: list[dict], path: str | Path) -> None:
    """Training loss (and LR) against step, validation mIoU against step."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    if train:
        steps = [r["step"] for r in train]
        ax1.plot(steps, [r["loss"] for r in train], label="loss (weighted sum over iterations)")
        lists = [r["loss_per_iteration"] for r in train if r.get("loss_per_iteration")]
        # --random-iterations logs a different N per step: per-iteration curves only when N is fixed
        per_it = np.array(lists, dtype=float) if len({len(v) for v in lists}) == 1 else np.empty((0, 0))
        if per_it.ndim == 2 and per_it.shape[1] > 1 and len(per_it) == len(steps):
            for t in range(per_it.shape[1]):
                ax1.plot(steps, per_it[:, t], lw=0.8, alpha=0.7, label=f"CE t={t + 1}")
        ax1.set_yscale("log")
        lr_ax = ax1.twinx()
        lr_ax.plot(steps, [r["lr"] for r in train], color="grey", ls=":", label="lr")
        lr_ax.set_ylabel("learning rate", color="grey")
        ax1.legend(fontsize=7, loc="upper right")
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    ax1.set_title("training")
    if evals:
        ax2.plot([r["step"] for r in evals], [r["miou"] for r in evals], marker="o")
    ax2.set_xlabel("step")
    ax2.set_ylabel("val mIoU (last iteration)")
    ax2.set_title("validation")
    ax2.grid(alpha=0.3)
    _save(fig, path)


def plot_miou_per_iteration(records: list[dict], path: str | Path) -> None:
    """Validation mIoU against iteration t, for the latest and the best evaluation."""
    evals = [r for r in records if r.get("kind") == "eval" and r.get("per_iteration")]
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    if evals:
        best = max(evals, key=lambda r: r["miou"] if r["miou"] is not None else -1)
        for r, label in ((evals[-1], "latest"), (best, "best")):
            ts = [p["iteration"] for p in r["per_iteration"]]
            ax.plot(ts, [p["miou"] for p in r["per_iteration"]], marker="o", label=f"{label} (step {r['step']})")
            ax.set_xticks(ts)
        ax.legend()
    ax.set_xlabel("iteration t")
    ax.set_ylabel("val mIoU")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_run(run: str | Path) -> None:
    run = Path(run)
    records = read_log(run / "log.jsonl")
    plot_curves(records, run / "curves.png")
    plot_miou_per_iteration(records, run / "miou_per_iteration.png")


def plot_samples(model, dataset, path: str | Path, iterations: int = 3, count: int = 4, device="cpu",
                 flip: bool = False) -> None:
    """Rows: sample frames spread over the split; columns: image, hand probability at t = 1..T, ground truth."""
    import torch

    from .inference import predict_probs

    n = len(dataset)
    idx = sorted(set(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist()))
    t_cols = model.iterations_to_run(iterations)
    fig = Figure(figsize=(2.2 * (t_cols + 2), 1.9 * len(idx)))
    axes = np.atleast_2d(fig.subplots(len(idx), t_cols + 2, squeeze=False))
    model.eval()
    for row, i in enumerate(idx):
        rec = dataset.raw(i)
        x = dataset[i]["image"].unsqueeze(0).to(device)
        with torch.no_grad():
            probs = [p[0].float().cpu().numpy() for p in predict_probs(model, x, iterations, flip)]
        panels = [(rec["image"], "image", None)]
        panels += [(p, f"t={t + 1}", "gray") for t, p in enumerate(probs)]
        panels += [(rec["mask"], "ground truth", "gray")]
        for col, (img, title, cmap) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1 if cmap else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(rec["frame_id"], fontsize=6)
    _save(fig, path)
