"""`kbh predict`: a trained model's hand probabilities back into a workspace as pre-annotations.

Each frame gets a probability map and an uncertainty score (mean binary entropy of its hand probability, in
bits: 0 = certain everywhere, 1 = a coin flip everywhere), and becomes `prelabeled` so the annotator opens it with
the prediction as GrabCut's prior. Frames a person has worked on (in progress, done, reviewed) are never touched.

With `--propagate` (after McIntosh et al.), frame k+1 of a sequence is seeded with frame k's mask: the finished
mask where a person made one, otherwise this run's prediction for frame k; the seeded frame runs fewer iterations
(default 1). A sequence's first frame, or one after a gap, runs unseeded with the full iteration count.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from kbh.errors import KbhError
from kbh.workspace import HUMAN_STATUSES, LABELED_STATUSES, Workspace, propagated_model

from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import normalize

DEFAULT_SIZE = (230, 306)  # kbh split's default: the size models are trained at unless told otherwise


def binary_entropy(p: np.ndarray) -> float:
    """Mean binary entropy in bits of probabilities `p`."""
    p = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))


@dataclass
class Predictor:
    """A checkpoint ready to segment frames of any size at the size it was trained on."""

    model: torch.nn.Module
    name: str
    mean: tuple
    std: tuple
    size: tuple[int, int]  # (H, W) the network sees
    iterations: int

    @classmethod
    def from_checkpoint(cls, path: str | Path, size: tuple[int, int] | None = None) -> "Predictor":
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt)
        norm = ckpt["normalization"]
        size = size or tuple(ckpt.get("input_size") or ()) or DEFAULT_SIZE
        tag = f"{ckpt['model_config']['name']}@{ckpt.get('step', 0)}"
        return cls(model, tag, tuple(norm["mean"]), tuple(norm["std"]), tuple(size), model.default_iterations)

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray, iterations: int | None = None,
                      seed: np.ndarray | None = None) -> np.ndarray:
        """Hand probability (H, W) float32 at the image's own size, after `iterations` iterations.

        `seed`: a previous frame's mask or probability (H, W) in [0, 1], fed as s0."""
        h, w = image.shape[:2]
        sh, sw = self.size
        small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA if sh * sw < h * w else cv2.INTER_LINEAR)
        x = normalize(small, self.mean, self.std)[None]
        s0 = None
        if seed is not None:
            if not getattr(self.model, "seedable", False):
                raise KbhError(f"model {self.name} has no mask input: it cannot be seeded (no --propagate)")
            s = cv2.resize(seed.astype(np.float32), (sw, sh), interpolation=cv2.INTER_LINEAR)
            s0 = torch.from_numpy(np.clip(s, 0, 1))[None, None]
        outs = self.model(x, iterations=iterations or self.iterations, s0=s0)
        prob = outs[-1].softmax(1)[0, 1].numpy()
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)


@dataclass
class PredictReport:
    predicted: int = 0
    propagated: int = 0
    skipped_human: int = 0
    seconds: float = 0.0


def predict_workspace(ws: Workspace, predictor: Predictor, statuses=("unlabeled", "prelabeled"),
                      iterations: int | None = None, propagate: bool = False, propagate_iterations: int = 1,
                      progress: bool = True) -> PredictReport:
    from tqdm import tqdm

    bad = [s for s in statuses if s in HUMAN_STATUSES]
    if bad:
        raise KbhError(f"--frames {bad[0]}: frames a person worked on are never overwritten by predictions")
    report = PredictReport()
    frames = ws.frames()  # all, in person/sequence/index order: propagation needs the neighbours
    todo = [f for f in frames if f.status in statuses]
    report.skipped_human = sum(1 for f in frames if f.status in HUMAN_STATUSES)
    if not todo:
        return report
    seeds: dict[int, np.ndarray] = {}  # frame id -> its finished mask, or the probability predicted here
    t0 = time.perf_counter()
    wanted = {f.id for f in todo}
    bar = tqdm(total=len(todo), desc="predict", unit="frame", disable=not progress, file=sys.stderr)
    sequence = None
    for f in frames:
        if f.sequence_id != sequence:  # frames come in sequence order: earlier sequences' seeds are done with
            sequence = f.sequence_id
            seeds.clear()
        finished = ws.mask(f) if f.status in LABELED_STATUSES else None
        if f.id not in wanted:
            if propagate and finished is not None:
                seeds[f.id] = finished.astype(np.float32)
            continue
        seed = None
        if propagate and (before := ws.previous_frame(f)) is not None:
            seed = seeds.pop(before.id, None)
        image = ws.image(f)
        if seed is not None:
            prob = predictor.probabilities(image, propagate_iterations, seed=seed)
            model = propagated_model(predictor.name)
            report.propagated += 1
        else:
            prob = predictor.probabilities(image, iterations)
            model = predictor.name
        ws.save_prediction(f.id, model, prob, binary_entropy(prob))
        if propagate:
            seeds[f.id] = prob
        report.predicted += 1
        bar.update()
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report


def run_predict(args) -> int:
    from kbh.shards import parse_size

    torch.set_num_threads(max(1, torch.get_num_threads()))
    predictor = Predictor.from_checkpoint(args.checkpoint, parse_size(args.size) if args.size else None)
    statuses = {"unlabeled": ("unlabeled",), "prelabeled": ("prelabeled",),
                "unworked": ("unlabeled", "prelabeled")}[args.frames]
    with Workspace.open(args.workspace) as ws:
        r = predict_workspace(ws, predictor, statuses, args.iterations, args.propagate, args.propagate_iterations,
                              progress=not args.quiet)
    rate = r.predicted / r.seconds if r.seconds else 0.0
    print(f"predicted {r.predicted} frames with {predictor.name} ({r.propagated} seeded from the previous frame) "
          f"in {r.seconds:.1f} s ({rate:.1f} frames/s); {r.skipped_human} frames with human work left untouched")
    return 0
