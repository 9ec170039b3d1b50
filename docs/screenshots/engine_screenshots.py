"""One HGR1 frame after three human-protocol strokes, with each engine, in the real app on a real X display.

    xvfb-run -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb .venv/bin/python \
        docs/screenshots/engine_screenshots.py FRAME_NAME OUT_DIR [--checkpoint runs/int_hgr1/best.pt]

FRAME_NAME is an HGR1 photograph (e.g. 2_P_hgr1_id07_1) from ../shared/data/hgr1. For each engine (GrabCut, and
the model and the model refined by GrabCut when a checkpoint is given) a fresh workspace holds the frame without its mask; the strokes are those
the human protocol (kbh.simulated_annotator.human_stroke, seed 0) draws against that engine's masks; each is drawn with
real X mouse events (xdotool: press, move, release; left button hand, right button background) on the window,
and the app's own worker computes the mask. The window is then grabbed from the X server into
OUT_DIR/engine_<name>.png, and the IoU of the app's mask against the HGR1 mask is printed.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QSettings
from PySide6.QtWidgets import QApplication

from annotator.engines import build_engine
from annotator.window import AnnotatorWindow
from kbh.grabcut import iou
from kbh.imageio import read_image
from kbh.mask_rules import HGR1_MASK, read_mask
from kbh.simulated_annotator import simulate
from kbh.workspace import Workspace

HGR1 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hgr1"


def pump(app, cond, timeout_s=60.0):
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("the app did not finish in time")
        app.processEvents()
        time.sleep(0.01)


def xdotool_stroke(app, win, stroke) -> None:
    """Draw one stroke with real X pointer events at the canvas position of its image points."""
    vp = win.canvas.viewport()
    pts = [vp.mapToGlobal(win.canvas.mapFromScene(QPointF(x + 0.5, y + 0.5))) for x, y in stroke.points]
    button = "1" if stroke.label == 1 else "3"
    cmd = ["xdotool", "mousemove", "--sync", str(pts[0].x()), str(pts[0].y()), "sleep", "0.05", "mousedown", button]
    for p in pts[1:]:
        cmd += ["mousemove", "--sync", str(p.x()), str(p.y()), "sleep", "0.01"]
    cmd += ["sleep", "0.05", "mouseup", button]
    proc = subprocess.Popen(cmd)
    pump(app, lambda: proc.poll() is not None)  # keep the event loop running while the pointer moves
    if proc.returncode:
        raise RuntimeError(f"xdotool failed ({proc.returncode})")


def one_engine(app, name: str, checkpoint: str | None, image, gt, frame_name: str, out: Path) -> None:
    choice = build_engine(name, checkpoint)
    strokes = simulate(image, gt, max_strokes=3, protocol="human", seed=0, session_factory=choice.factory).strokes
    root = Path(tempfile.mkdtemp()) / "ws"
    ws = Workspace.init(root)
    with ws.transaction():
        ws.upsert_person("07")
        ws.upsert_sequence(frame_name, "07")
        ws.add_image(frame_name, 1, image)
    settings = QSettings(str(root.parent / "settings.ini"), QSettings.Format.IniFormat)
    win = AnnotatorWindow(ws, settings=settings, annotator="screenshot", engine=choice)
    win.resize(1200, 820)
    win.show()
    pump(app, lambda: win.isVisible() and win.windowHandle() is not None and win.windowHandle().isExposed())
    time.sleep(0.3)
    app.processEvents()
    for s in strokes:
        win.set_radius(s.radius)
        xdotool_stroke(app, win, s)
        pump(app, lambda: win.all_saved())
    settle = time.monotonic() + 0.6  # let the last repaints reach the X server before grabbing it
    pump(app, lambda: time.monotonic() > settle)
    shot = out / f"engine_{name}.png"
    app.primaryScreen().grabWindow(win.winId()).save(str(shot))
    got = iou(win.session.mask, gt)
    print(f"{name}: {len(win.session.strokes)} strokes drawn with xdotool, IoU {got:.3f} -> {shot}")
    print(f"  status bar: {win.frame_label.text()}")
    win.close()
    ws.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("frame")
    p.add_argument("out", type=Path)
    p.add_argument("--checkpoint", default=None)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    image = read_image(HGR1 / "images" / f"{args.frame}.jpg")
    gt = read_mask(HGR1 / "masks" / f"{args.frame}.bmp", HGR1_MASK)
    app = QApplication.instance() or QApplication(["engine_screenshots"])
    one_engine(app, "grabcut", None, image, gt, args.frame, args.out)
    if args.checkpoint:
        one_engine(app, "model", args.checkpoint, image, gt, args.frame, args.out)
        one_engine(app, "model-grabcut", args.checkpoint, image, gt, args.frame, args.out)


if __name__ == "__main__":
    main()
