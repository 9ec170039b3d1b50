"""The annotator for a long day (issue 10), in the real app on a real X display, driven with real X mouse and key
events (xdotool):

    xvfb-run -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb .venv/bin/python \
        docs/screenshots/day_screenshots.py OUT_DIR

A workspace of 16 HGR1 photographs (persons 01-04, from ../shared/data/hgr1, imported without masks) gets a
day's worth of states: some frames done with strokes, one reviewed, one in progress, one propagated, and model
predictions with uncertainties on the rest. Then three windows are grabbed from the X server:
- `day_frame_list.png`: the frame list coloured by status, with the uncertainty column, sorted by uncertainty;
- `day_review_mode.png`: review mode on a frame a reviewer sent back, its note in the yellow banner;
- `day_polygon.png`: a hand polygon drawn vertex by vertex with the polygon tool (closed on its first vertex)
  over GrabCut's mask from one stroke.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt
from PySide6.QtWidgets import QApplication

from annotator.window import COLUMNS, AnnotatorWindow
from kbh.engines import engine_factory
from kbh.ingest import import_items, items_from_folder
from kbh.strokes import Stroke
from kbh.workspace import Workspace

HGR1 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hgr1"


def pump(app, cond, timeout_s=60.0):
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("the app did not finish in time")
        app.processEvents()
        time.sleep(0.01)


def xdotool(app, *args):
    proc = subprocess.Popen(["xdotool", *args])
    pump(app, lambda: proc.poll() is not None)
    if proc.returncode:
        raise RuntimeError(f"xdotool {' '.join(args)} failed")


def screen_point(win, x, y):
    p = win.canvas.viewport().mapToGlobal(win.canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)))
    return str(p.x()), str(p.y())


def build(root: Path) -> None:
    import shutil

    src = root.parent / "src"
    (src / "images").mkdir(parents=True)
    for p in sorted((HGR1 / "images").glob("*.jpg")):
        if any(f"hgr1_id0{k}_" in p.name for k in (1, 2, 3, 4)) and len(list((src / "images").iterdir())) < 16:
            shutil.copy(p, src / "images" / p.name)
    ws = Workspace.init(root)
    import_items(ws, items_from_folder(src / "images", person_regex=r"hgr1_id(\d+)", sequence_regex=r"^(.*)_\d+$",
                                       index_regex=r"_(\d+)$"), progress=False)
    frames = ws.frames()
    grabcut = engine_factory("grabcut")
    rng = np.random.default_rng(0)
    for k, f in enumerate(frames[:6]):  # a person's morning: strokes, done
        h, w = f.height, f.width
        stroke = Stroke(1, 8, ((w * 0.45, h * 0.45), (w * 0.5, h * 0.6)))
        mask = grabcut(ws.image(f), None).update([stroke])
        status = "reviewed" if k == 0 else "done"
        ws.save_annotation(f.id, mask=mask, strokes=[stroke], status=status, source="grabcut", annotator="ana",
                           add_seconds=float(rng.uniform(20, 60)))
    ws.save_annotation(frames[6].id, status="in_progress", strokes=[], annotator="ana", add_seconds=12)
    for f in frames[7:]:  # a model's pre-annotations, least certain first in the queue
        prob = np.clip(rng.random((f.height, f.width)) * 0.3, 0, 1).astype(np.float32)
        ws.save_prediction(f.id, "sru0@900", prob, uncertainty=float(rng.uniform(0.02, 0.4)))
    ws.save_annotation(frames[3].id, status="in_progress", note="the thumb is cut off at the knuckle")
    ws.close()


def window(app, root: Path, settings: QSettings) -> AnnotatorWindow:
    win = AnnotatorWindow(Workspace.open(root), settings=settings, annotator="screenshot")
    win.owns_workspace = True
    win.resize(1300, 820)
    win.show()
    pump(app, lambda: win.isVisible() and win.windowHandle() is not None and win.windowHandle().isExposed())
    time.sleep(0.3)
    app.processEvents()
    return win


def grab(app, win, path: Path) -> None:
    end = time.monotonic() + 0.6  # let the last repaints reach the X server
    pump(app, lambda: time.monotonic() > end)
    app.primaryScreen().grabWindow(win.winId()).save(str(path))
    print(f"-> {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp()) / "ws"
    build(root)
    app = QApplication.instance() or QApplication(["day_screenshots"])
    settings = QSettings(str(root.parent / "settings.ini"), QSettings.Format.IniFormat)

    win = window(app, root, settings)  # the list, sorted by uncertainty with a real click on its header
    win.resizeDocks([win.list_dock], [700], Qt.Orientation.Horizontal)
    pump(app, lambda: True)
    header = win.table.horizontalHeader()
    col = COLUMNS.index("Uncertainty")
    at = header.viewport().mapToGlobal(QPoint(header.sectionViewportPosition(col) + header.sectionSize(col) // 2,
                                              header.height() // 2))
    xdotool(app, "mousemove", "--sync", str(at.x()), str(at.y()), "click", "1")
    grab(app, win, args.out / "day_frame_list.png")

    sent_back = next(f for f in win.controller.frames if win.ws.note(f.id))
    win.act_review_mode.trigger()
    win.open_frame(sent_back.id)
    grab(app, win, args.out / "day_review_mode.png")
    win.close()

    win = window(app, root, settings)
    target = win.controller.frames[8]
    win.open_frame(target.id)
    h, w = target.height, target.width
    win.set_radius(6)
    a, b = screen_point(win, w * 0.45, h * 0.5), screen_point(win, w * 0.5, h * 0.6)
    xdotool(app, "mousemove", "--sync", *a, "mousedown", "1", "mousemove", "--sync", *b, "mouseup", "1")
    pump(app, win.all_saved)
    win.act_polygon.trigger()
    for fx, fy in ((0.3, 0.3), (0.62, 0.28), (0.7, 0.55), (0.55, 0.8), (0.32, 0.7), (0.3, 0.3)):
        xdotool(app, "mousemove", "--sync", *screen_point(win, w * fx, h * fy), "click", "1")
    pump(app, win.all_saved)
    s = win.session
    print(f"polygon: {len(s.strokes)} strokes ({', '.join(st.kind for st in s.strokes)}), source {s.source}, "
          f"undo: {s.undo_text}")
    grab(app, win, args.out / "day_polygon.png")
    win.close()


if __name__ == "__main__":
    main()
