"""A simulated person annotating workspace frames with the GrabCut engine (the demo's labelling step).

It draws strokes where kbh.simulated_annotator's protocol puts them (inside the largest remaining error region) until the
mask reaches the target IoU against the ground truth, or the stroke cap, then saves the mask, the strokes and the
engine time as a person's annotation would be saved. A prelabeled frame starts from its prediction, as in the
annotator, and records the source `model` or `propagated`.

The ground truth is the frame's stored mask if it has one, else `WS/ground_truth/<frame id>.png`, which
`kbh synth --unlabeled` writes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .grabcut import GrabCutSession, iou
from .imageio import read_mask_png
from .simulated_annotator import next_stroke
from .workspace import PROPAGATED, Frame, Workspace, is_propagated

ANNOTATOR = "simulated"


def ground_truth(ws: Workspace, frame: Frame) -> np.ndarray | None:
    """The frame's reference mask {0,1}: its stored mask, else the synthetic ground truth, else None."""
    mask = ws.mask(frame)
    if mask is not None:
        return mask
    path = ws.ground_truth_path(frame)
    return read_mask_png(path) if path.exists() else None


@dataclass
class AnnotationSummary:
    frames: int = 0
    strokes: list = field(default_factory=list)
    ious: list = field(default_factory=list)
    seconds: float = 0.0
    by_source: dict = field(default_factory=dict)


def annotate_frame(ws: Workspace, frame: Frame, gt: np.ndarray, target: float = 0.90, max_strokes: int = 20,
                   radius: float = 5.0) -> tuple[int, float, float, str]:
    """Annotate one frame; returns (strokes, final IoU, engine seconds, source)."""
    image = ws.image(frame)
    prior, source = None, "grabcut"
    pred = ws.prediction(frame.id) if frame.status == "prelabeled" else None
    if pred is not None:
        prior = ws.prediction_probability(pred)
        source = PROPAGATED if is_propagated(pred.model) else "model"
    session = GrabCutSession(image, prior=prior)
    t0 = time.perf_counter()
    mask = session.update([])
    strokes = []
    while iou(mask, gt) < target and len(strokes) < max_strokes:
        stroke = next_stroke(mask, gt, radius=radius)
        if stroke is None:
            break
        strokes.append(stroke)
        mask = session.update(list(strokes))
    seconds = time.perf_counter() - t0
    ws.save_annotation(frame.id, mask=mask, strokes=strokes, status="done", source=source, annotator=ANNOTATOR,
                       add_seconds=seconds)
    return len(strokes), iou(mask, gt), seconds, source


def annotate_frames(ws: Workspace, frames: list[Frame], target: float = 0.90, max_strokes: int = 20,
                    radius: float = 5.0, progress: bool = True) -> AnnotationSummary:
    from tqdm import tqdm

    summary = AnnotationSummary()
    bar = tqdm(frames, desc="simulated annotation", unit="frame", disable=not progress, file=sys.stderr)
    for f in bar:
        gt = ground_truth(ws, f)
        if gt is None:
            continue
        n, score, secs, source = annotate_frame(ws, f, gt, target, max_strokes, radius)
        summary.frames += 1
        summary.strokes.append(n)
        summary.ious.append(score)
        summary.seconds += secs
        summary.by_source[source] = summary.by_source.get(source, 0) + 1
        bar.set_postfix(strokes=f"{np.mean(summary.strokes):.1f}", iou=f"{np.mean(summary.ious):.3f}")
    return summary
