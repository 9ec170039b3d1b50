"""`kbh bench annotate WS`: a simulated annotator over a workspace's frames that have a mask.

For each frame with a stored mask (the ground truth), a simulated annotator (kbh.simulated_annotator) draws strokes until
the stroke cap or a perfect mask, with one of two protocols: `center` (each stroke at the centre of the largest
error region, the standard NoC protocol) or `human` (strokes as people draw them: a long first stroke along the
hand, then off-centre 20-60 px corrections with jitter; seeded). The engine is any of kbh.engines (`grabcut`, or
`model` with an interactive checkpoint). Three starts are compared where available: from strokes alone, from
the frame's newest model prediction (pre-annotation), and from the previous frame's mask in the same sequence
(propagation). `--size HxW` resizes frames and masks first (the product's 230x306); by default frames keep
their own size. Prints NoC@85/90 (capped), IoU after 1/3/5 strokes, ms per stroke (median, p90: the engine's
update, wall clock) and the frames that never reach 90%.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STARTS = ("strokes", "model", "propagated")


def register(bench_sub) -> None:
    p = bench_sub.add_parser("annotate", help="simulated annotator: strokes needed from scratch / model / previous frame")
    p.add_argument("workspace", type=Path)
    p.add_argument("--person", action="append", help="only frames of this person (repeatable)")
    p.add_argument("--limit", type=int, default=0, help="at most this many frames (0: all with a mask)")
    p.add_argument("--starts", default=",".join(STARTS), help=f"comma-separated subset of {','.join(STARTS)}")
    p.add_argument("--max-strokes", type=int, default=20)
    p.add_argument("--radius", type=float, default=5.0, help="brush radius in image pixels")
    p.add_argument("--engine", default="grabcut", help="segmentation engine (grabcut, model)")
    p.add_argument("--checkpoint", default=None, help="the model engine's checkpoint (kbh train --interactive)")
    p.add_argument("--protocol", choices=("center", "human"), default="center",
                   help="center: strokes at the centre of the largest error; human: strokes as people draw them")
    p.add_argument("--size", default=None, metavar="HxW", help="resize frames to this size first (default: own size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the human protocol (frame k uses seed + k)")
    p.add_argument("--model", default=None, help="prediction model name (default: the newest prediction)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument("--plot", type=Path, default=None, help="PNG: mean IoU after k strokes, one curve per start")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    import cv2

    from kbh.engines import engine_factory
    from kbh.errors import KbhError
    from kbh.atomic_file import atomic_write_bytes
    from kbh.shards import parse_size, resize_pair
    from kbh.simulated_annotator import simulate
    from kbh.simulate_annotate import ground_truth
    from kbh.workspace import Workspace

    factory = engine_factory(args.engine, checkpoint=args.checkpoint)
    size = parse_size(args.size) if args.size else None

    def resized(a, interpolation):
        if size is None or a is None:
            return a
        return cv2.resize(a, (size[1], size[0]), interpolation=interpolation)

    starts = [s.strip() for s in args.starts.split(",") if s.strip()]
    for s in starts:
        if s not in STARTS:
            raise KbhError(f"--starts: unknown start {s!r} (choose from {', '.join(STARTS)})")
    ws = Workspace.open(args.workspace, readonly=True)
    try:
        frames = [f for f in ws.frames() if args.person is None or f.person_id in args.person]
        results: dict[str, list] = {s: [] for s in starts}
        done = 0
        from tqdm import tqdm

        bar = tqdm(total=min(len(frames), args.limit or len(frames)), desc="bench annotate", unit="frame",
                   file=sys.stderr)
        for f in frames:
            if args.limit and done >= args.limit:
                break
            gt = ground_truth(ws, f)
            if gt is None:
                continue
            done += 1
            image = ws.image(f)
            if size is not None:
                image, gt = resize_pair(image, gt, size)
            priors = {"strokes": None}
            if "model" in starts:
                pred = ws.prediction(f.id, args.model)
                priors["model"] = None if pred is None else resized(ws.prediction_probability(pred), cv2.INTER_LINEAR)
            if "propagated" in starts:
                # the previous frame as a person finished it (its reference mask)
                before = ws.previous_frame(f)
                prev = resized(ground_truth(ws, before), cv2.INTER_NEAREST) if before is not None else None
                priors["propagated"] = None if prev is None or prev.shape != gt.shape else prev.astype(np.float32)
            for s in starts:
                if s != "strokes" and priors.get(s) is None:
                    continue
                r = simulate(image, gt, prior=priors[s], max_strokes=args.max_strokes, radius=args.radius,
                             protocol=args.protocol, seed=args.seed + done - 1, session_factory=factory)
                results[s].append(r)
            bar.update(1)
        bar.close()
    finally:
        ws.close()
    if not done:
        raise KbhError(f"{args.workspace}: no frame with a mask to compare against")
    summary = {s: summarize(rs) for s, rs in results.items() if rs}
    where = f"size {args.size or 'own'}"
    print(f"engine {getattr(factory, 'engine_name', args.engine)}, protocol {args.protocol}, {where}")
    header = f"{'start':<11} {'frames':>6} {'NoC@85':>7} {'NoC@90':>7} {'IoU@0':>6} {'IoU@1':>6} {'IoU@3':>6} " \
             f"{'IoU@5':>6} {'ms med':>7} {'ms p90':>7} {'<90%':>5}"
    print(header)
    for s, r in summary.items():
        print(f"{s:<11} {r['frames']:>6} {r['noc85']:>7.2f} {r['noc90']:>7.2f} {r['iou@0']:>6.3f} {r['iou@1']:>6.3f} "
              f"{r['iou@3']:>6.3f} {r['iou@5']:>6.3f} {r['median_ms']:>7.1f} {r['p90_ms']:>7.1f} "
              f"{r['never90']:>5}")
    print(f"NoC capped at {args.max_strokes}; brush radius {args.radius} px; <90%: frames never reaching IoU 0.90")
    if args.json:
        atomic_write_bytes(args.json, json.dumps({"max_strokes": args.max_strokes, "radius": args.radius,
                                                  "engine": args.engine, "checkpoint": args.checkpoint,
                                                  "protocol": args.protocol, "size": args.size, "seed": args.seed,
                                                  "persons": args.person, "starts": summary}, indent=2).encode())
    if args.plot:
        plot_curves(summary, args.plot, args.max_strokes)
    return 0


def summarize(results) -> dict:
    import numpy as np

    ms = np.array([s for r in results for s in r.seconds] or [0.0]) * 1000
    out = {"frames": len(results),
           "noc85": float(np.mean([r.strokes_to(0.85) for r in results])),
           "noc90": float(np.mean([r.strokes_to(0.90) for r in results])),
           "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
           "never90": int(sum(not r.reached(0.90) for r in results))}
    for k in (0, 1, 3, 5):
        out[f"iou@{k}"] = float(np.mean([r.iou_after(k) for r in results]))
    out["iou_curve"] = [float(np.mean([r.iou_after(k) for r in results])) for k in range(results[0].max_strokes + 1)]
    return out


LABELS = {"strokes": "GrabCut from strokes alone", "model": "from the model's pre-annotation",
          "propagated": "from the previous frame's mask"}


def plot_curves(summary: dict, path: Path, max_strokes: int) -> None:
    """Mean IoU after k strokes per start, with the 85/90% targets: the strokes saved are the horizontal gaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kbh.atomic_file import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for start, r in summary.items():
        ax.plot(range(len(r["iou_curve"])), r["iou_curve"], marker="o", ms=3,
                label=f"{LABELS.get(start, start)} (NoC@90 {r['noc90']:.2f}, {r['frames']} frames)")
    for t in (0.85, 0.90):
        ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="strokes", ylabel="mean IoU", xlim=(0, max_strokes), ylim=(0, 1.0),
           title="Simulated annotation: IoU after k strokes")
    ax.legend(loc="lower right", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
