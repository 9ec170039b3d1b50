"""Screenshots of the annotator on a real workspace (run under Xvfb; see docs/screenshots/README.md).

    xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python docs/screenshots/make_screenshots.py WS HGR1_MASKS OUT

WS is a workspace imported from ../shared/data/hgr1/images (no masks). The strokes are placed the way a person
would (a short foreground stroke inside the hand, background strokes around it, then up to four corrections
where the mask is still wrong, chosen by kbh.simulated_annotator), using the data set's own masks only to know where the
hand is; every mask shown is computed by the GrabCut engine in the app's worker.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QSettings, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from annotator.window import AnnotatorWindow
from kbh.workspace import Workspace


def wait(app, cond, timeout_s=30.0):
    import time

    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("the app did not finish in time")
        app.processEvents()
        QTest.qWait(20)


def draw(win, points, button=Qt.MouseButton.LeftButton):
    vp = win.canvas.viewport()
    pos = [win.canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)) for x, y in points]
    QTest.mousePress(vp, button, Qt.KeyboardModifier.NoModifier, pos[0])
    for p in pos[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, button, Qt.KeyboardModifier.NoModifier, pos[-1])


def scribbles(hand: np.ndarray):
    """A person's scribbles for a hand mask: one foreground stroke along the hand's thickest part, background
    strokes a margin away from the hand."""
    h, w = hand.shape
    inside = cv2.distanceTransform(hand.astype(np.uint8), cv2.DIST_L2, 5)
    outside = cv2.distanceTransform((1 - hand).astype(np.uint8), cv2.DIST_L2, 5)
    ys, xs = np.nonzero(inside > 0.6 * inside.max())
    order = np.argsort(ys)
    pick = order[np.linspace(0, len(order) - 1, 5).astype(int)]
    fg = [(float(xs[i]), float(ys[i])) for i in pick]
    # background: a loop just inside the frame border, cut where it would cross the hand (a person lifts the pen)
    m = 12
    corners = np.array([(m, m), (w - m, m), (w - m, h - m), (m, h - m), (m, m)], float)
    dense = np.concatenate([np.linspace(a, b, 60) for a, b in zip(corners[:-1], corners[1:])])
    free = outside[dense[:, 1].astype(int), dense[:, 0].astype(int)] > 15
    runs, cur = [], []
    for p, ok in zip(dense, free):
        if ok:
            cur.append((float(p[0]), float(p[1])))
        elif cur:
            runs.append(cur)
            cur = []
    runs.append(cur)
    frame_loop = [r for r in runs if len(r) >= 2]
    band = np.argwhere((outside > 25) & (outside < 30))
    rng = np.random.default_rng(0)
    near = [tuple(map(float, band[i][::-1])) for i in rng.choice(len(band), 3, replace=False)] if len(band) else []
    return fg, frame_loop, near


def annotate(app, win, masks_dir: Path, frame, done: bool):
    win.open_frame(frame.id)
    name = f"{frame.sequence_id}_{frame.frame_index}"
    gt = cv2.imread(str(masks_dir / f"{name}.bmp"), cv2.IMREAD_GRAYSCALE)
    hand = (gt == 0).astype(np.uint8)  # HGR1 masks: hand black
    fg, loop, near = scribbles(hand)
    radius = max(3.0, min(hand.shape) / 80)
    win.set_radius(radius)
    settled = win.all_saved
    draw(win, fg)
    wait(app, settled)
    for run in loop:
        draw(win, run, Qt.MouseButton.RightButton)
        wait(app, settled)
    for p in near:
        draw(win, [p, (p[0] + 6, p[1] + 4)], Qt.MouseButton.RightButton)
        wait(app, settled)
    # then corrections where the mask is still wrong, as a person would (the simulated annotator's choice)
    from kbh.simulated_annotator import next_stroke

    for _ in range(4):
        m = win.session.mask.astype(bool)
        if (m & hand.astype(bool)).sum() / max(1, (m | hand.astype(bool)).sum()) > 0.93:
            break
        stroke = next_stroke(win.session.mask, hand, radius=radius, length=25)
        if stroke is None:
            break
        button = Qt.MouseButton.LeftButton if stroke.label == 1 else Qt.MouseButton.RightButton
        draw(win, list(stroke.points), button)
        wait(app, settled)
    if done:
        win.act_done.trigger()
        wait(app, settled)
    m = win.session.mask.astype(bool)
    iou = (m & hand.astype(bool)).sum() / max(1, (m | hand.astype(bool)).sum())
    print(f"{frame.key}: {len(win.session.strokes)} strokes, IoU against the HGR1 mask {iou:.3f}")


def save(widget, path: Path) -> None:
    """Grab a widget and store it as a small palette PNG (screenshots are committed)."""
    from PIL import Image

    widget.grab().save(str(path))
    Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main(ws_path: str, masks_dir: str, out: str) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    win = AnnotatorWindow(Workspace.open(ws_path), settings=settings, annotator="screenshot")
    win.resize(1400, 860)
    win.show()
    QTest.qWaitForWindowExposed(win)
    frames = win.controller.frames
    for f in frames[:3]:
        annotate(app, win, Path(masks_dir), f, done=True)
    target = frames[3]
    annotate(app, win, Path(masks_dir), target, done=False)
    win.set_opacity(0.4)
    app.processEvents()
    QTest.qWait(200)
    save(win, out_dir / "annotator_window.png")
    # close-up: zoomed on the hand, strokes and contour visible
    win.canvas.zoom_by(1.8)
    win.canvas.centerOn(*np.mean(np.argwhere(win.session.mask)[:, ::-1], axis=0))
    app.processEvents()
    QTest.qWait(100)
    save(win.canvas, out_dir / "canvas_zoomed.png")
    win.canvas.fit()
    win.show_help()
    QTest.qWaitForWindowExposed(win.help_dialog)
    QTest.qWait(100)
    save(win.help_dialog, out_dir / "help_shortcuts.png")
    win.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
