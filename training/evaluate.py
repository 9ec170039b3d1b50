"""`kbh eval`: score a checkpoint on one split, per iteration t = 1..T (T may exceed the trained count).

One confusion matrix per iteration over the whole split (both classes) gives mIoU, mean recall, mean precision
and mean F1; a hand-probability histogram per iteration gives the break-even point (training/metrics.py).
Optional horizontal-flip averaging: the hand probabilities of the image and of its mirror (mirrored back) are
averaged at each iteration. The anytime curve (T beyond training) follows McIntosh et al.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from kbh.errors import KbhError
from kbh.atomic_file import atomic_write_bytes

from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import ShardDataset, rank_indices
from .inference import predict_probs
from .metrics import REPORTED, IterationScorer



def score_dataset(model, dataset, iterations: int, device, batch: int = 4, rank: int = 0, world: int = 1,
                  flip: bool = False, workers: int = 0) -> IterationScorer:
    """A fresh scorer filled with this process's share of `dataset`, then summed over all processes."""
    was_training = model.training
    model.eval()
    scorer = IterationScorer(model.iterations_to_run(iterations), device=device)  # new per split: never stale
    share = Subset(dataset, rank_indices(len(dataset), rank, world))
    loader = DataLoader(share, batch_size=batch, num_workers=workers)
    with torch.no_grad():
        for b in loader:
            probs = predict_probs(model, b["image"].to(device), iterations, flip)
            scorer.update(probs, b["mask"].to(device))
    scorer.all_reduce()
    model.train(was_training)
    return scorer


def _clean(v):
    """NaN -> None so the JSON file stays standard JSON."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def format_table(report: dict) -> str:
    head = f"{'t':>3} {'mIoU':>7} {'mRecall':>8} {'mPrecision':>10} {'mF1':>7} {'BEP':>7}"
    lines = [f"{report['model']} on {report['split']} ({report['frames']} frames{', flip-averaged' if report['flip'] else ''};"
             f" trained with {report['trained_iterations']} iteration(s))", head]
    for r in report["per_iteration"]:
        cells = [f"{r[k]:.4f}" if r[k] is not None else "nan" for k in REPORTED]
        mark = " *" if r["iteration"] > report["trained_iterations"] else ""
        lines.append(f"{r['iteration']:>3} {cells[0]:>7} {cells[1]:>8} {cells[2]:>10} {cells[3]:>7} {cells[4]:>7}{mark}")
    if any(r["iteration"] > report["trained_iterations"] for r in report["per_iteration"]):
        lines.append("  * beyond the iterations the model was trained with")
    return "\n".join(lines)


def evaluate(checkpoint: str | Path, data: str | Path, split: str = "test", iterations: int | None = None,
             flip: bool = False, device: str = "cpu", batch: int = 4, workers: int = 0) -> tuple[dict, object, object]:
    """Score `checkpoint` on `split`; returns (report dict as written to JSON, model, dataset)."""
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = model_from_checkpoint(ckpt).to(device)
    norm = ckpt["normalization"]
    dataset = ShardDataset(data, split, mean=norm["mean"], std=norm["std"])
    trained = model.iterations_to_run(int(ckpt.get("args", {}).get("iterations", model.default_iterations)))
    t = iterations or trained
    if t < 1:
        raise KbhError(f"--iterations {t}: must be at least 1")
    scorer = score_dataset(model, dataset, t, torch.device(device), batch=batch, flip=flip, workers=workers)
    per_iteration = [{k: _clean(v) for k, v in r.items()} for r in scorer.results()]
    report = {"model": model.config["name"], "checkpoint": str(checkpoint), "data": str(data), "split": split,
              "frames": len(dataset), "flip": flip, "trained_iterations": trained, "step": int(ckpt["step"]),
              "manifest_id": dataset.manifest_id, "checkpoint_manifest_id": ckpt.get("manifest_id"),
              "per_iteration": per_iteration}
    return report, model, dataset


def run_eval(args) -> int:
    with torch.no_grad():  # scoped: the demo and tests run other commands in the same process afterwards
        return _run_eval(args)


def _run_eval(args) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    report, model, dataset = evaluate(args.checkpoint, args.data, args.split, args.iterations, args.flip, device,
                                      args.batch, args.workers)
    if report["checkpoint_manifest_id"] and report["checkpoint_manifest_id"] != report["manifest_id"]:
        print(f"kbh eval: note: {args.data} comes from manifest {report['manifest_id']}, the model was trained on "
              f"{report['checkpoint_manifest_id']} (its test persons may overlap the training persons)")
    print(format_table(report))
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(report, indent=1) + "\n").encode())
        print(f"wrote {args.json}")
    if args.samples:
        from .plots import plot_samples

        t = args.iterations or report["trained_iterations"]
        plot_samples(model, dataset, args.samples, iterations=t, count=args.sample_count, device=device, flip=args.flip)
        print(f"wrote {args.samples}")
    return 0
