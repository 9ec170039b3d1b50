"""The interactive model engine against GrabCut, by simulated annotation (docs/adr/0007).

    kbh bench interactive --checkpoint runs/int_hgr1/best.pt \
        --manifest runs/hgr1_int_shards/manifest.json --split val --size 230x306

Frames: the HGR1 images of the split's persons (read from the manifest, so only persons the run may look at),
resized to --size; ground truth hand = mask pixel < 128 (HGR1 masks are inverted). Engines:
- "model, 1 it": the model engine, one recurrent iteration per stroke seeded with the current mask (default);
- "model, 3 it": three iterations per stroke;
- "GrabCut": strokes alone;
- "model -> GrabCut": the model's full-resolution probability after the first stroke becomes GrabCut's prior
  (GrabCutSession(image, prior=prob)), which then takes all strokes.
Centre protocol (kbh.simulated_annotator.next_stroke), radius 5 px, cap 20 strokes. ms = wall time of each update after a
stroke (torch threads as they are), with the load average, as the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np

from kbh.grabcut import GrabCutSession
from kbh.simulated_annotator import simulate
from training.interactive_engine import make_factory


def frames(images: Path, masks: Path, persons: set[str], size: tuple[int, int]):
    h, w = size
    for path in sorted(images.iterdir()):
        m = re.search(r"hgr1_id(\d+)", path.name)
        if not m or m.group(1) not in persons:
            continue
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(masks / (path.stem + ".bmp")), cv2.IMREAD_GRAYSCALE)
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        gt = (cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) < 128).astype(np.uint8)
        yield path.stem, np.ascontiguousarray(image), gt


def hybrid_factory(model_factory):
    """The model segments from the first stroke; GrabCut, with the model's probability as prior, does the rest."""

    class Hybrid:
        label = "model -> GrabCut"

        def __init__(self, image, prior=None, **kw):
            self.image, self.model, self.first, self.gc = image, model_factory(image, prior), None, None

        def update(self, strokes):
            if not strokes:
                return self.model.update([])
            if self.gc is None or strokes[0] != self.first:
                self.first = strokes[0]
                self.gc = GrabCutSession(self.image, prior=self.model.full_probability(strokes[:1]))
            return self.gc.update(list(strokes))

    return Hybrid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kbh bench interactive", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--images", default="/work/shared/data/hgr1/images")
    ap.add_argument("--masks", default="/work/shared/data/hgr1/masks")
    ap.add_argument("--size", default="230x306")
    ap.add_argument("--max-strokes", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    persons = set(json.loads(Path(args.manifest).read_text())["splits"][args.split]["persons"])
    size = tuple(int(v) for v in args.size.split("x"))
    data = list(frames(Path(args.images), Path(args.masks), persons, size))
    engines = {"model, 1 it": make_factory(args.checkpoint), "model, 3 it": make_factory(args.checkpoint, iterations=3),
               "GrabCut": GrabCutSession, "model -> GrabCut": hybrid_factory(make_factory(args.checkpoint))}
    print(f"{len(data)} frames of persons {sorted(persons)} at {size[0]}x{size[1]}; load average {os.getloadavg()[0]:.1f}")
    print("| engine | frames | NoC@85 | NoC@90 | IoU@1 | IoU@3 | IoU@5 | ms median | ms p90 |")
    print("|---|---|---|---|---|---|---|---|---|")
    report = {}
    for name, factory in engines.items():
        t0 = time.time()
        results = [simulate(image, gt, max_strokes=args.max_strokes, session_factory=factory) for _, image, gt in data]
        ms = np.array([s for r in results for s in r.seconds]) * 1000
        row = {"frames": len(results), "noc85": float(np.mean([r.strokes_to(0.85) for r in results])),
               "noc90": float(np.mean([r.strokes_to(0.90) for r in results])),
               **{f"iou{k}": float(np.mean([r.iou_after(k) for r in results])) for k in (1, 3, 5)},
               "ms_median": float(np.median(ms)), "ms_p90": float(np.percentile(ms, 90)),
               "load": os.getloadavg()[0], "seconds": time.time() - t0}
        report[name] = row
        print(f"| {name} | {row['frames']} | {row['noc85']:.2f} | {row['noc90']:.2f} | {row['iou1']:.3f} | "
              f"{row['iou3']:.3f} | {row['iou5']:.3f} | {row['ms_median']:.1f} | {row['ms_p90']:.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
