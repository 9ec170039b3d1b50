"""Simulated annotators: the two stroke protocols of `kbh bench annotate`.

`center` (`next_stroke`), the standard protocol of interactive segmentation benchmarks, as in Xu et al. (2016)
and the NoC ("number of clicks") protocol that followed: each new stroke goes into the largest connected error
region (a missed hand region gets a hand stroke, a false hand region a background stroke), at the point
farthest from the region's boundary, drawn as a short stroke along the region's main axis. Deterministic, and
kinder than a person: every stroke lands where it helps most.

`human` (`human_stroke`), strokes as people draw them (seeded):
- the first stroke on a frame without a pre-annotation is long: it runs along the hand's main axis through
  its thickest part, over 40-70% of the hand's length, with a hand's wobble;
- each correction goes into the largest error region too (people fix the worst error first), but starts
  off-centre: anywhere in the region at least a brush radius from its edge, not at its deepest point; it is
  20-60 px long, along the region's axis give or take 25 degrees, with a few pixels of jitter, and may run on
  past the error into correct pixels of the same class, as people overshoot.

Both keep every stroke off the other class of the ground truth (with a 1.5 px margin for the rasteriser), so
strokes are correct hard labels; a stroke that would cross is cut short where it would.
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
    for label, region in _largest_errors(mask, gt):
        stroke = _stroke_in_region(region, gt if label == FOREGROUND else ~gt, label, radius, length)
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


PROTOCOLS = ("center", "human")

# The human protocol's constants (in image pixels / degrees), chosen from how people were seen to draw, not tuned.
FIRST_FRACTION = (0.4, 0.7)  # first stroke: fraction of the hand's length (4 sigma of its main axis)
CORRECTION_LENGTH = (20.0, 60.0)
ANGLE_SPREAD_DEG = 25.0
JITTER_PX = 2.0
POINT_SPACING_PX = 4.0


def _largest_errors(mask: np.ndarray, gt: np.ndarray):
    """Error regions, largest first: (label to draw, boolean region)."""
    regions = []
    for label, error in ((FOREGROUND, gt & ~mask), (BACKGROUND, mask & ~gt)):
        if not error.any():
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
        for i in range(1, n):
            regions.append((-int(stats[i, cv2.CC_STAT_AREA]), len(regions), label, comp, i))
    regions.sort(key=lambda r: (r[0], r[1]))
    for _, _, label, comp, i in regions:
        yield label, comp == i


def _main_axis(region: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy) unit vector of the region's main axis and its length (4 standard deviations)."""
    m = cv2.moments(region.astype(np.uint8), binaryImage=True)
    theta = 0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"])
    area = max(m["m00"], 1.0)
    a, b, c = m["mu20"] / area, m["mu11"] / area, m["mu02"] / area
    major = 0.5 * (a + c) + math.sqrt(max(0.0, 0.25 * (a - c) ** 2 + b * b))
    return math.cos(theta), math.sin(theta), 4.0 * math.sqrt(max(major, 0.0))


def _walk(start, direction, length, safe, rng) -> list[tuple[int, int]]:
    """Points from `start` along `direction` for up to `length` px with a smooth sideways jitter, stopping
    before the first point outside `safe` (bool (H, W))."""
    h, w = safe.shape
    dx, dy = direction
    px, py = -dy, dx  # sideways
    n = max(1, int(round(length / POINT_SPACING_PX)))
    offsets = np.cumsum(rng.normal(0.0, JITTER_PX / 2, n + 1))
    offsets = np.clip(offsets - offsets[0], -JITTER_PX * 1.5, JITTER_PX * 1.5)
    pts = []
    for k in range(n + 1):
        t = k * length / n
        x = start[0] + t * dx + offsets[k] * px
        y = start[1] + t * dy + offsets[k] * py
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < w and 0 <= yi < h and safe[yi, xi]):
            break
        if not pts or pts[-1] != (xi, yi):
            pts.append((xi, yi))
    return pts


def human_stroke(mask: np.ndarray, gt: np.ndarray, rng: np.random.Generator, radius: float = 5.0,
                 first: bool = False) -> Stroke | None:
    """The stroke a person draws next (see the module docstring), or None when no error region can take one.

    first: the frame has no stroke and no pre-annotation yet, so the person starts with the long stroke along
    the hand. rng: a numpy Generator; the same seed gives the same strokes."""
    mask, gt = np.asarray(mask).astype(bool), np.asarray(gt).astype(bool)
    if mask.shape != gt.shape:
        raise ValueError(f"mask shape {mask.shape} does not match ground truth {gt.shape}")
    if first and gt.any():
        n, comp, stats, _ = cv2.connectedComponentsWithStats(gt.astype(np.uint8), connectivity=8)
        hand = comp == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        stroke = _first_stroke(hand, gt, rng, radius)
        if stroke is not None:
            return stroke
    for label, region in _largest_errors(mask, gt):
        stroke = _correction(region, gt if label == FOREGROUND else ~gt, label, rng, radius)
        if stroke is not None:
            return stroke
    return None


def _safe_radius(d_class: np.ndarray, where: np.ndarray, radius: float) -> float | None:
    """The largest whole radius <= `radius` that a stroke can have somewhere in `where` and stay off the other
    class (a thick line covers up to r + 0.5 px from its path; 1 px spare)."""
    deepest = float(d_class[where].max()) if where.any() else 0.0
    r = float(min(int(radius), int(math.floor(deepest - 2.0))))
    return r if r >= 1.0 else None


def _first_stroke(hand, gt, rng, radius) -> Stroke | None:
    d_class = _distance_inside(gt)
    r = _safe_radius(d_class, hand, radius)
    if r is None:
        return None
    safe = hand & (d_class > r + 1.5)
    dx, dy, axis_len = _main_axis(hand)
    # Through the thickest part of the hand (the palm), not the centroid, which may lie between the fingers.
    d_hand = np.where(safe, d_class, 0)
    ty, tx = np.nonzero(d_hand >= d_hand.max() * 0.8)
    j = int(rng.integers(len(ty)))
    cx, cy = int(tx[j]), int(ty[j])
    theta = math.atan2(dy, dx) + math.radians(rng.normal(0.0, ANGLE_SPREAD_DEG / 3))
    dx, dy = math.cos(theta), math.sin(theta)
    length = rng.uniform(*FIRST_FRACTION) * axis_len
    # Centred on the palm point: half each way, as far as the hand allows.
    back = _walk((cx, cy), (-dx, -dy), length / 2, safe, rng)
    fwd = _walk((cx, cy), (dx, dy), length / 2, safe, rng)
    points = list(reversed(back)) + fwd[1:] if back else fwd
    return _checked(Stroke(FOREGROUND, r, tuple(points or [(cx, cy)])), gt)


def _correction(region, same_class, label, rng, radius) -> Stroke | None:
    d_class = _distance_inside(same_class)
    d_region = _distance_inside(region)
    r = _safe_radius(d_class, region, radius)
    if r is None:
        return None
    safe = same_class & (d_class > r + 1.5)
    # Off-centre: anywhere at least a brush radius inside the region (or, for a thin region, on its ridge).
    depth = min(r, float(d_region[region & safe].max()) if (region & safe).any() else 0.0)
    starts = region & safe & (d_region >= depth)
    if not starts.any():
        return None
    ty, tx = np.nonzero(starts)
    j = int(rng.integers(len(ty)))
    sx, sy = int(tx[j]), int(ty[j])
    dx, dy, _ = _main_axis(region)
    theta = math.atan2(dy, dx) + math.radians(rng.uniform(-ANGLE_SPREAD_DEG, ANGLE_SPREAD_DEG))
    if rng.random() < 0.5:
        theta += math.pi
    dx, dy = math.cos(theta), math.sin(theta)
    length = rng.uniform(*CORRECTION_LENGTH)
    # People aim at the region: if the chosen direction leaves it within a few pixels, draw the other way.
    fwd = _walk((sx, sy), (dx, dy), length, safe, rng)
    bwd = _walk((sx, sy), (-dx, -dy), length, safe, rng)
    inside_f = sum(region[y, x] for x, y in fwd)
    inside_b = sum(region[y, x] for x, y in bwd)
    points = fwd if inside_f >= inside_b else bwd
    return _checked(Stroke(label, r, tuple(points or [(sx, sy)])), same_class)


def _checked(stroke: Stroke, same_class: np.ndarray) -> Stroke | None:
    """The stroke if its footprint stays in its class; else its longest safe prefix; else None."""
    pts = stroke.points
    while pts:
        s = Stroke(stroke.label, stroke.radius, pts)
        if not (rasterize(s, same_class.shape) & ~same_class).any():
            return s
        pts = pts[:-1]
    return None


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
    protocol: str = "center",
) -> SimulationResult:
    """Annotate one frame with strokes of `protocol` ("center": `next_stroke`, deterministic; "human":
    `human_stroke`, seeded by `seed`) until `max_strokes`, a perfect mask, or IoU >= `stop_at` with at least 5
    strokes drawn (None: never stop early).

    session_factory(image, prior=prior, seed=seed) must return an object with `update(strokes) -> mask`.
    `targets` are the IoU levels of interest; they only make sure a run with stop_at does not stop before
    reaching them.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    gt = np.asarray(gt).astype(np.uint8)
    rng = np.random.default_rng(seed)
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
        if protocol == "human":
            stroke = human_stroke(mask, gt, rng, radius=radius, first=not strokes and prior is None)
        else:
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
