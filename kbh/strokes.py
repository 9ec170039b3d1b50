"""Scribbles as data: a stroke is a labelled polyline with a brush radius, drawn in image pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

FOREGROUND = 1
BACKGROUND = 0


@dataclass(frozen=True)
class Stroke:
    label: int  # FOREGROUND (hand) or BACKGROUND
    radius: float  # brush radius in image pixels
    points: tuple[tuple[float, float], ...] = field(default_factory=tuple)  # (x, y) in image pixels

    def __post_init__(self):
        if self.label not in (FOREGROUND, BACKGROUND):
            raise ValueError(f"stroke label must be 0 or 1, got {self.label!r}")
        if self.radius <= 0:
            raise ValueError(f"stroke radius must be positive, got {self.radius!r}")
        object.__setattr__(self, "points", tuple((float(x), float(y)) for x, y in self.points))

    def to_json(self) -> dict:
        return {"label": self.label, "radius": self.radius, "points": [list(p) for p in self.points]}

    @classmethod
    def from_json(cls, d: dict) -> "Stroke":
        return cls(int(d["label"]), float(d["radius"]), tuple(tuple(p) for p in d["points"]))


def rasterize(stroke: Stroke, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) footprint of one stroke: round-capped thick polyline."""
    canvas = np.zeros(shape[:2], np.uint8)
    draw_stroke(canvas, stroke, 1)
    return canvas.astype(bool)


def draw_stroke(canvas: np.ndarray, stroke: Stroke, value: int) -> None:
    """Paint `stroke` onto `canvas` (uint8, in place) with `value`."""
    if not stroke.points:
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
