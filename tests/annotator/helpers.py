"""What the annotator's tests share: a tiny workspace, a stand-in engine, and drawing with the mouse."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt

from kbh.strokes import rasterize
from kbh.workspace import Workspace
from tests.helpers import blob_image

H, W = 60, 80


def add_png(ws, seq, idx, img) -> int:
    return ws.add_image(seq, idx, img)


def make_workspace(root, persons=(("p1", "s1", 3), ("p2", "s2", 2)), h=H, w=W) -> Workspace:
    """A tiny workspace: per person one sequence of `n` 60x80 frames with a bright blob as the hand."""
    ws = Workspace.init(root)
    seed = 0
    for person, seq, n in persons:
        ws.upsert_sequence(seq, person)
        for i in range(n):
            img, _ = blob_image(h, w, seed=seed)
            seed += 1
            add_png(ws, seq, i, img)
    return ws


def fake_engine(image, prior=None):
    """Deterministic stand-in for GrabCut: bright pixels, plus foreground strokes, minus background strokes."""

    class Engine:
        def update(self, strokes):
            m = (image.mean(axis=2) > 100).astype(np.uint8)
            for s in strokes:
                m[rasterize(s, m.shape)] = s.label
            return m

    return Engine()


def view_pos(win, x, y) -> QPoint:
    """Viewport position of image pixel (x, y)."""
    return win.canvas.mapFromScene(QPointF(x + 0.5, y + 0.5))


def draw(qtbot, win, points, button=Qt.MouseButton.LeftButton):
    vp = win.canvas.viewport()
    qtbot.mousePress(vp, button, pos=view_pos(win, *points[0]))
    for p in points[1:]:
        qtbot.mouseMove(vp, pos=view_pos(win, *p))
    qtbot.mouseRelease(vp, button, pos=view_pos(win, *points[-1]))


def wait_saved(qtbot, win):
    qtbot.waitUntil(win.all_saved, timeout=10000)
