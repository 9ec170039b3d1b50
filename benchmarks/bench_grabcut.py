"""GrabCut engine benchmark: our GrabCutSession against plain whole-frame cv2.grabCut, driven by the simulated
annotator (kbh.simulated_annotator) on real HGR1 frames, at 230x306 and at 720x1280 (upscaled HGR1 frames).

The "+prior" rows start from a prior: the ground truth shifted by (8, 5) px, a stand-in for the previous
frame's mask. The brush radius (--radius at 306 px) and stroke length (20 px) scale with the frame size.

Prints, per engine and frame size: median and p90 ms per update (after a stroke; wall clock and process CPU
time, the latter robust to a busy machine since OpenCV runs on one thread here), IoU after 1/3/5 strokes and
NoC@85/90 (strokes to reach the IoU, capped at --max-strokes), and the ratio ours/baseline. Both engines run in the
same process on the same frames and strokes protocol.

    kbh bench grabcut [--data ../shared/data/hgr1] [--frames 16] [--large 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from kbh.imageio import read_image
from kbh.mask_rules import HGR1_MASK, read_mask
from kbh.simulated_annotator import simulate
from kbh.strokes import BACKGROUND, FOREGROUND, hard_labels


class PlainGrabCut:
    """The baseline: every update reruns cv2.grabCut from scratch on the whole frame at full resolution, with
    the strokes as definite labels and everything else probable background (or the prior's labels)."""

    def __init__(self, image, prior=None, seed=0, iterations=2):
        self.image, self.prior, self.seed, self.iterations = image, prior, seed, iterations

    def update(self, strokes):
        h, w = self.image.shape[:2]
        if self.prior is None:
            labels = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        else:
            labels = np.where(self.prior >= 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        hard = hard_labels(list(strokes), (h, w))
        labels[hard == FOREGROUND] = cv2.GC_FGD
        labels[hard == BACKGROUND] = cv2.GC_BGD
        fg = np.count_nonzero(labels & 1)
        if fg < 10 or labels.size - fg < 10:
            return (labels & 1).astype(np.uint8) if fg >= 10 else np.zeros((h, w), np.uint8)
        cv2.setRNGSeed(self.seed)
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        cv2.grabCut(self.image, labels, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        return (labels & 1).astype(np.uint8)


def load_frames(data: Path, count: int):
    """`count` HGR1 frames spread over the persons (sorted names, every k-th), with hand = 1 masks."""
    names = sorted(p.stem for p in (data / "images").glob("*.jpg"))
    if not names:
        raise SystemExit(f"{data}: no images/*.jpg")
    step = max(1, len(names) // count)
    out = []
    for name in names[::step][:count]:
        image = read_image(data / "images" / f"{name}.jpg")
        out.append((name, image, read_mask(data / "masks" / f"{name}.bmp", HGR1_MASK)))
    return out


def resize(image, gt, size):
    w, h = size
    interp = cv2.INTER_AREA if w * h < image.shape[0] * image.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(image, (w, h), interpolation=interp), cv2.resize(gt, (w, h), interpolation=cv2.INTER_NEAREST)


def shifted(gt, dx=8, dy=5):
    """The ground truth moved by a few pixels: a stand-in for the previous frame's mask (propagation)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(gt, m, gt.shape[::-1], flags=cv2.INTER_NEAREST).astype(np.float32)


def run(frames, factory, args, max_strokes, prior=False):
    results = []
    for _, image, gt in frames:
        # The brush scales with the frame, as a person drawing on a frame fitted to the window would see it.
        k = max(image.shape[:2]) / 306
        results.append(simulate(image, gt, prior=shifted(gt) if prior else None, max_strokes=max_strokes,
                                radius=args.radius * k, length=round(20 * k), session_factory=factory,
                                stop_at=args.stop_at))
    capped = max_strokes < args.max_strokes  # too few strokes for a NoC figure
    ms = np.array([s for r in results for s in r.seconds] or [0.0]) * 1000
    cpu = np.array([s for r in results for s in r.cpu_seconds] or [0.0]) * 1000
    return {
        "iou@0": float(np.mean([r.iou_after(0) for r in results])),
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "cpu_median_ms": float(np.median(cpu)),
        "cpu_p90_ms": float(np.percentile(cpu, 90)),
        "updates": int(ms.size),
        **{f"iou@{k}": float(np.mean([r.iou_after(k) for r in results])) for k in (1, 3, 5)},
        "noc85": "-" if capped else float(np.mean([r.strokes_to(0.85) for r in results])),
        "noc90": "-" if capped else float(np.mean([r.strokes_to(0.90) for r in results])),
        "failed90": "-" if capped else int(sum(not r.reached(0.90) for r in results)),
    }


def table(rows):
    keys = ["median_ms", "p90_ms", "cpu_median_ms", "cpu_p90_ms", "updates", "iou@0", "iou@1", "iou@3", "iou@5", "noc85", "noc90", "failed90"]
    lines = ["| frames | engine | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for frames, engine, r in rows:
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) and k.startswith("iou") else
                 f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        lines.append(f"| {frames} | {engine} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    default_data = ROOT.parent / "shared" / "data" / "hgr1"
    p = argparse.ArgumentParser(prog="kbh bench grabcut", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=default_data)
    p.add_argument("--frames", type=int, default=16, help="HGR1 frames at 230x306")
    p.add_argument("--large", type=int, default=4, help="HGR1 frames upscaled to 720x1280")
    p.add_argument("--max-strokes", type=int, default=20)
    p.add_argument("--radius", type=float, default=5.0)
    p.add_argument("--stop-at", type=float, default=0.95,
                   help="stop a frame once IoU reaches this after >= 5 strokes (keeps the baseline affordable)")
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--large-baseline-strokes", type=int, default=5,
                   help="strokes per frame for the baseline on 720x1280 (it takes seconds per update)")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)

    from kbh.grabcut import GrabCutSession

    def ours(image, prior=None, seed=0):
        return GrabCutSession(image, prior=prior, seed=seed, iterations=args.iterations)

    def plain(image, prior=None, seed=0):
        return PlainGrabCut(image, prior=prior, seed=seed, iterations=args.iterations)

    frames = load_frames(args.data, max(args.frames, args.large))
    small = [(n, *resize(i, g, (230, 306))) for n, i, g in frames[: args.frames]]
    sets = [("230x306", small, False), ("230x306 +prior", small, True)]
    if args.large:
        large = frames[:: max(1, len(frames) // args.large)][: args.large]
        sets.append(("720x1280", [(n, *resize(i, g, (1280, 720))) for n, i, g in large], False))
    rows = []
    t_all = time.perf_counter()
    for label, fs, prior in sets:
        for name, factory in (("ours", ours), ("plain cv2.grabCut", plain)):
            t0 = time.perf_counter()
            cap = args.max_strokes
            if label == "720x1280" and name != "ours":
                cap = min(cap, args.large_baseline_strokes)
            r = run(fs, factory, args, cap, prior)
            rows.append((f"{label} x{len(fs)}", name, r))
            print(f"{label} {name}: {r}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        a, b = rows[-2][2], rows[-1][2]
        print(f"{label}: median time ours/plain = {a['median_ms'] / b['median_ms']:.3f}, "
              f"speed-up {b['median_ms'] / a['median_ms']:.1f}x", flush=True)
    print()
    print(table(rows))
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s; cv2 {cv2.__version__}, threads=1, "
          f"iterations={args.iterations}, radius={args.radius}, stop_at={args.stop_at}")


if __name__ == "__main__":
    main()
