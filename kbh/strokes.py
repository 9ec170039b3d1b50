"""Strokes as data, in image pixel coordinates: a labelled polyline with a brush radius, of one of three kinds.

    scribble   a GrabCut (or model) hint: the engine decides the mask from the scribbles, which keep their labels
    paint      a direct brush: it sets mask pixels itself, over whatever the engine decided
    polygon    a filled polygon (its points are the vertices) that sets mask pixels itself

A frame's mask is a function of its stroke list: the engine's mask for the scribbles, then every paint and
polygon drawn over it in order (`compose`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

FOREGROUND = 1
BACKGROUND = 0
SCRIBBLE, PAINT, POLYGON = "scribble", "paint", "polygon"
KINDS = (SCRIBBLE, PAINT, POLYGON)


@dataclass(frozen=True)
class Stroke:
    label: int  # FOREGROUND (hand) or BACKGROUND
    radius: float  # brush radius in image pixels
    points: tuple[tuple[float, float], ...] = field(default_factory=tuple)  # (x, y) in image pixels
    kind: str = SCRIBBLE

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stroke kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.label not in (FOREGROUND, BACKGROUND):
            raise ValueError(f"stroke label must be 0 or 1, got {self.label!r}")
        if self.radius <= 0:
            raise ValueError(f"stroke radius must be positive, got {self.radius!r}")
        object.__setattr__(self, "points", tuple((float(x), float(y)) for x, y in self.points))

    @property
    def direct(self) -> bool:
        """It sets mask pixels itself (paint, polygon) rather than hinting the engine."""
        return self.kind != SCRIBBLE

    def to_json(self) -> dict:
        return {"label": self.label, "radius": self.radius, "points": [list(p) for p in self.points],
                "kind": self.kind}

    @classmethod
    def from_json(cls, d: dict) -> "Stroke":
        return cls(int(d["label"]), float(d["radius"]), tuple(tuple(p) for p in d["points"]),
                   d.get("kind", SCRIBBLE))


def rasterize(stroke: Stroke, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) footprint of one stroke: round-capped thick polyline."""
    canvas = np.zeros(shape[:2], np.uint8)
    draw_stroke(canvas, stroke, 1)
    return canvas.astype(bool)


def draw_stroke(canvas: np.ndarray, stroke: Stroke, value: int) -> None:
    """Paint `stroke` onto `canvas` (uint8, in place) with `value`."""
    if not stroke.points:
        return
    if stroke.kind == POLYGON:
        pts = np.round(np.asarray(stroke.points)).astype(np.int32)
        cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], int(value), lineType=cv2.LINE_8)
        return
    r = max(1, int(round(stroke.radius)))
    pts = np.round(np.asarray(stroke.points)).astype(np.int32)
    for p in pts:
        cv2.circle(canvas, (int(p[0]), int(p[1])), r, int(value), -1, lineType=cv2.LINE_8)
    if len(pts) > 1:
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, int(value), thickness=2 * r, lineType=cv2.LINE_8)


def hard_labels(strokes: list[Stroke], shape: tuple[int, int]) -> np.ndarray:
    """int8 (H, W): -1 where no stroke, else the label of the last stroke covering the pixel."""
    out = np.full(shape[:2], -1, np.int8)
    scratch = np.zeros(shape[:2], np.uint8)
    for s in strokes:
        scratch[:] = 0
        draw_stroke(scratch, s, 1)
        out[scratch.astype(bool)] = s.label
    return out


def scribbles(strokes) -> list[Stroke]:
    """The strokes the engine sees: the hints, without the direct edits."""
    return [s for s in strokes if s.kind == SCRIBBLE]


def compose(mask: np.ndarray, strokes) -> np.ndarray:
    """`mask` (the engine's, for the scribbles) with every paint and polygon stroke drawn over it, in order."""
    out = np.array(mask, dtype=np.uint8, copy=True)
    for s in strokes:
        if s.direct:
            draw_stroke(out, s, s.label)
    return out


def split_by_eraser(stroke: Stroke, eraser: np.ndarray) -> list[Stroke] | None:
    """What is left of `stroke` where the eraser footprint (bool (H, W)) touches it: None if untouched; else the
    pieces of its polyline whose points lie outside the eraser (a polygon touched anywhere goes whole)."""
    foot = rasterize(stroke, eraser.shape)
    if not (foot & eraser).any():
        return None
    if stroke.kind == POLYGON:
        return []
    h, w = eraser.shape
    pieces, run = [], []
    for x, y in _dense(stroke.points):
        xi, yi = min(max(int(round(x)), 0), w - 1), min(max(int(round(y)), 0), h - 1)
        if eraser[yi, xi]:
            if run:
                pieces.append(run)
            run = []
        else:
            run.append((x, y))
    if run:
        pieces.append(run)
    return [Stroke(stroke.label, stroke.radius, tuple(p), stroke.kind) for p in pieces]


def _dense(points) -> list[tuple[float, float]]:
    """The polyline's points with at most one pixel between neighbours (so a cut can fall between mouse moves)."""
    out = list(points[:1])
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        n = max(1, int(np.ceil(np.hypot(x1 - x0, y1 - y0))))
        out += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(1, n + 1)]
    return out
