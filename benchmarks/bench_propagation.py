"""Propagation through video (McIntosh et al.): seeded-with-1-iteration against unseeded-with-T.

For every frame k >= 1 of every sequence in a shard split, segment it
  (a) unseeded with T iterations (the model's default, s0 = ones),
  (b) seeded with frame k-1's ground-truth mask (a person finished frame k-1) and 1 iteration,
  (c) seeded with this method's own prediction for frame k-1 (a chain, no human in the loop) and 1 iteration,
and report mIoU over the split (one confusion matrix per method) and milliseconds per frame, measured in the
same process on the same frames.

    kbh bench propagation --checkpoint RUN/best.pt --data SHARDS --split test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch


from kbh.workspace import previous_index
from training.data import open_split
from training.metrics import confusion, scores_from_confusion
from training.predict import Predictor


def run(checkpoint: Path, data: Path, split: str, seeded_iterations: int = 1, limit: int = 0) -> dict:
    torch.set_num_threads(2)
    predictor = Predictor.from_checkpoint(checkpoint)
    reader = open_split(data, split)
    by_seq = defaultdict(list)
    for i in range(len(reader)):
        r = reader[i]
        by_seq[r["sequence_id"]].append((r["frame_index"], i))
    methods = {"unseeded": f"unseeded, {predictor.iterations} iterations",
               "seeded_gt": f"seeded with previous ground truth, {seeded_iterations} iteration(s)",
               "seeded_chain": f"seeded with own previous prediction, {seeded_iterations} iteration(s)"}
    cms = {m: np.zeros((2, 2), np.int64) for m in methods}
    secs = {m: 0.0 for m in methods}
    n = 0
    for seq, items in sorted(by_seq.items()):
        items.sort()
        prev_gt, chain = None, None
        prev_index = None
        for frame_index, i in items:
            r = reader[i]
            image, gt = r["image"], r["mask"]
            if prev_gt is not None and prev_index == previous_index(frame_index):
                runs = {"unseeded": (predictor.iterations, None), "seeded_gt": (seeded_iterations, prev_gt),
                        "seeded_chain": (seeded_iterations, chain)}
                for m, (its, seed) in runs.items():
                    t0 = time.perf_counter()
                    prob = predictor.probabilities(image, its, seed=seed)
                    secs[m] += time.perf_counter() - t0
                    cms[m] += confusion(torch.from_numpy(prob > 0.5), torch.from_numpy(gt)).numpy()
                    if m == "seeded_chain":
                        chain = prob
                n += 1
            else:
                chain = predictor.probabilities(image)  # a chain starts unseeded
            prev_gt, prev_index = gt.astype(np.float32), frame_index
            if limit and n >= limit:
                break
    if n == 0:
        raise SystemExit(f"{data}: split {split!r} has no consecutive frames to propagate through")
    out = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "frames": n, "methods": {}}
    for m, label in methods.items():
        s = scores_from_confusion(cms[m])
        out["methods"][m] = {"label": label, "miou": s["miou"], "hand_iou": s["iou"][1],
                             "ms_per_frame": 1000 * secs[m] / n}
    base = out["methods"]["unseeded"]["ms_per_frame"]
    for m in methods:
        out["methods"][m]["speedup_vs_unseeded"] = base / out["methods"][m]["ms_per_frame"]
    return out


def format_table(r: dict) -> str:
    lines = [f"propagation on {r['frames']} frames ({r['data']}, split {r['split']})",
             f"{'method':58s} {'mIoU':>7s} {'hand IoU':>9s} {'ms/frame':>9s} {'speed-up':>9s}"]
    for m in r["methods"].values():
        lines.append(f"{m['label']:58s} {m['miou']:7.4f} {m['hand_iou']:9.4f} {m['ms_per_frame']:9.1f} "
                     f"{m['speedup_vs_unseeded']:8.2f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kbh bench propagation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--seeded-iterations", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="stop after this many frames (0: all)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    r = run(args.checkpoint, args.data, args.split, args.seeded_iterations, args.limit)
    print(format_table(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
