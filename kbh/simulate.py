"""A simulated annotator: the standard protocol of interactive segmentation benchmarks, with strokes.

As in Xu et al. (2016) and the NoC ("number of clicks") protocol that followed: each new stroke goes into the
largest connected error region (a missed hand region gets a hand stroke, a false hand region a background
stroke), at the point farthest from the region's boundary, here drawn as a short stroke along the region's main
axis. The stroke never touches the other class of the ground truth, so it is a correct hard label.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from .grabcut import GrabCutSession, iou
from .strokes import BACKGROUND, FOREGROUND, Stroke, rasterize


def next_stroke(mask: np.ndarray, gt: np.ndarray, radius: float = 5.0, length: int = 20) -> Stroke | None:
    """The stroke a careful annotator draws next, or None when no error region can take one.

    None when the mask equals the ground truth, and also when every error region is too thin for even a
    radius-1 stroke that stays off the other class (slivers along the true boundary).
    """
    mask, gt = np.asarray(mask).astype(bool), np.asarray(gt).astype(bool)
    if mask.shape != gt.shape:
        raise ValueError(f"mask shape {mask.shape} does not match ground truth {gt.shape}")
    regions = []  # (-area, order, label, region)
    for label, error in ((FOREGROUND, gt & ~mask), (BACKGROUND, mask & ~gt)):
        if not error.any():
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
        for i in range(1, n):
            regions.append((-int(stats[i, cv2.CC_STAT_AREA]), len(regions), label, comp, i))
    regions.sort(key=lambda r: (r[0], r[1]))
    for _, _, label, comp, i in regions:
        stroke = _stroke_in_region(comp == i, gt if label == FOREGROUND else ~gt, label, radius, length)
        if stroke is not None:
            return stroke
    return None


def _distance_inside(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each region pixel to the nearest pixel outside it (the image edge counts)."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _stroke_in_region(region, same_class, label, radius, length) -> Stroke | None:
    d_region = _distance_inside(region)
    d_class = _distance_inside(same_class)  # distance to the other class of the ground truth
    # The farthest point; among ties (the ridge of an elongated region) the one nearest their centroid.
    ty, tx = np.nonzero(d_region >= d_region.max() - 1e-3)
    j = int(np.argmin((ty - ty.mean()) ** 2 + (tx - tx.mean()) ** 2))
    cy, cx = int(ty[j]), int(tx[j])
    # A brush of radius r drawn as a thick line covers pixels up to r + 0.5 from its path; keep 1 px spare.
    r = min(float(radius), float(d_class[cy, cx]) - 1.5)
    if r < 1.0:
        return None
    r_draw = max(1, round(r))
    if r_draw > r:  # the rasterizer rounds the radius; stay on the safe side
        r_draw -= 1
        if r_draw < 1:
            return None
    r = float(r_draw)
    # Main axis of the region from its second moments.
    m = cv2.moments(region.astype(np.uint8), binaryImage=True)
    theta = 0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"])
    dx, dy = math.cos(theta), math.sin(theta)
    h, w = region.shape

    def ok(x, y):
        xi, yi = int(round(x)), int(round(y))
        return (0 <= xi < w and 0 <= yi < h and d_region[yi, xi] > r and d_class[yi, xi] > r + 1.5)

    half = length / 2.0
    ends = []
    for sign in (1.0, -1.0):
        t = 0.0
        while t + 1.0 <= half and ok(cx + sign * (t + 1.0) * dx, cy + sign * (t + 1.0) * dy):
            t += 1.0
        ends.append((round(cx + sign * t * dx), round(cy + sign * t * dy)))
    points = [ends[1], (int(cx), int(cy)), ends[0]]
    points = [p for j, p in enumerate(points) if j == 0 or p != points[j - 1]]
    stroke = Stroke(label, r, tuple(points))
    if (rasterize(stroke, region.shape) & ~same_class).any():
        stroke = Stroke(label, r, ((int(cx), int(cy)),))  # the centre alone is safe by construction
        if (rasterize(stroke, region.shape) & ~same_class).any():
            return None
    return stroke


@dataclass
class SimulationResult:
    """One simulated annotation of one frame.

    ious[k] is the IoU after k strokes (ious[0]: before any stroke); seconds[k-1] the engine's wall-clock time
    for the update that followed stroke k, cpu_seconds[k-1] its process CPU time (robust to a busy machine when
    the engine runs on one thread); first_seconds the wall-clock time of update([]) (the starting mask).
    """

    ious: list[float]
    seconds: list[float]
    strokes: list[Stroke] = field(default_factory=list)
    max_strokes: int = 20
    first_seconds: float = 0.0
    cpu_seconds: list[float] = field(default_factory=list)

    def strokes_to(self, target: float) -> int:
        """Strokes needed to reach IoU >= target (NoC@target); capped at max_strokes when never reached,
        as in the standard protocol."""
        for k, v in enumerate(self.ious):
            if v >= target:
                return k
        return self.max_strokes

    def reached(self, target: float) -> bool:
        return any(v >= target for v in self.ious)

    def iou_after(self, k: int) -> float:
        """IoU after k strokes; a run that stopped earlier (perfect mask, or stop_at reached) keeps its last
        value."""
        return self.ious[min(k, len(self.ious) - 1)]


def simulate(
    image: np.ndarray,
    gt: np.ndarray,
    prior: np.ndarray | None = None,
    max_strokes: int = 20,
    targets: tuple[float, ...] = (0.85, 0.90),
    radius: float = 5.0,
    seed: int = 0,
    session_factory: Callable[..., object] = GrabCutSession,
    length: int = 20,
    stop_at: float | None = None,
) -> SimulationResult:
    """Annotate one frame with strokes from `next_stroke` until `max_strokes`, a perfect mask, or IoU >=
    `stop_at` with at least 5 strokes drawn (None: never stop early).

    session_factory(image, prior=prior, seed=seed) must return an object with `update(strokes) -> mask`.
    `targets` are the IoU levels of interest; they only make sure a run with stop_at does not stop before
    reaching them.
    """
    gt = np.asarray(gt).astype(np.uint8)
    session = session_factory(image, prior=prior, seed=seed)
    stop = None if stop_at is None else max([stop_at, *targets])
    t0 = time.perf_counter()
    mask = session.update([])
    first = time.perf_counter() - t0
    result = SimulationResult([iou(mask, gt)], [], [], max_strokes, first)
    strokes: list[Stroke] = []
    while len(strokes) < max_strokes:
        if stop is not None and len(strokes) >= 5 and result.ious[-1] >= stop:
            break
        stroke = next_stroke(mask, gt, radius=radius, length=length)
        if stroke is None:
            break
        strokes.append(stroke)
        t0, c0 = time.perf_counter(), time.process_time()
        mask = session.update(list(strokes))
        result.seconds.append(time.perf_counter() - t0)
        result.cpu_seconds.append(time.process_time() - c0)
        result.ious.append(iou(mask, gt))
        result.strokes.append(stroke)
    return result
