"""Annotator responsiveness: how long the GUI thread is blocked per stroke, with GrabCut in the worker (the app)
against GrabCut run synchronously on the GUI thread (the baseline), both in this process on the same frames and
the same strokes, plus the latency from stroke to mask on screen.

Frames: real HGR1 photographs at their own size and upscaled to 1280x720. Strokes: the simulated annotator
(kbh.simulate.next_stroke) correcting the current mask against the HGR1 mask. Offscreen Qt.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_annotator.py [--data ../shared/data/hgr1]
        [--frames 4] [--strokes 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from annotator.session import FrameSession  # noqa: E402
from annotator.window import AnnotatorWindow  # noqa: E402
from kbh.grabcut import GrabCutSession  # noqa: E402
from kbh.imageio import sha256_bytes  # noqa: E402
from kbh.simulate import next_stroke  # noqa: E402
from kbh.workspace import Workspace  # noqa: E402


def build_workspace(root: Path, data: Path, n: int, size: tuple[int, int] | None):
    """Workspace of `n` HGR1 frames (resized to `size` = (w, h) if given); returns it and the hand masks."""
    ws = Workspace.init(root)
    ws.upsert_sequence("bench", "p")
    gts = {}
    for i, img_path in enumerate(sorted((data / "images").glob("*.jpg"))[:n]):
        img = cv2.imread(str(img_path))
        gt = (cv2.imread(str(data / "masks" / f"{img_path.stem}.bmp"), cv2.IMREAD_GRAYSCALE) == 0).astype(np.uint8)
        if size is not None:
            img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
            gt = cv2.resize(gt, size, interpolation=cv2.INTER_NEAREST)
        ok, buf = cv2.imencode(".png", img)
        with ws.transaction():
            fid = ws.add_frame("bench", i, buf.tobytes(), ".png", img.shape[1], img.shape[0], sha256_bytes(buf.tobytes()))
        gts[fid] = gt
    return ws, gts


def wait(app, cond, timeout_s=60.0):
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("no engine result")
        app.processEvents()
        time.sleep(0.001)


def run_app(app, ws, gts, n_strokes, radius):
    """GUI-thread ms per stroke (stroke handling + result handling) and stroke-to-screen latency, in the app."""
    blocked, latency, strokes_used = [], [], {}
    handle_ms = []
    original = AnnotatorWindow.on_result

    def timed_on_result(self, *a):
        t = time.perf_counter()
        original(self, *a)
        handle_ms.append(1000 * (time.perf_counter() - t))

    AnnotatorWindow.on_result = timed_on_result
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)
    win = AnnotatorWindow(ws, settings=settings)
    win.resize(1280, 800)
    win.show()
    try:
        for fid, gt in gts.items():
            win.open_frame(fid)
            s = win.session
            strokes_used[fid] = []
            for _ in range(n_strokes):
                stroke = next_stroke(s.mask, gt, radius=radius, length=max(20, gt.shape[1] // 20))
                if stroke is None:
                    break
                strokes_used[fid].append(stroke)
                handle_ms.clear()
                t0 = time.perf_counter()
                win.on_stroke(stroke)
                t_stroke = 1000 * (time.perf_counter() - t0)
                wait(app, win.all_saved)
                latency.append(1000 * (time.perf_counter() - t0))
                blocked.append(t_stroke + sum(handle_ms))
    finally:
        win.close()
        AnnotatorWindow.on_result = original
    return blocked, latency, strokes_used


def run_sync(ws, gts, strokes_used, canvas):
    """Baseline: the same strokes with GrabCut on the GUI thread (update, overlay, save all block it)."""
    blocked = []
    for fid, strokes in strokes_used.items():
        image = ws.image(fid)
        s = FrameSession(fid, np.zeros(gts[fid].shape, np.uint8))
        engine = GrabCutSession(image)
        canvas.set_image(image)
        for stroke in strokes:
            t0 = time.perf_counter()
            s.add_stroke(stroke)
            s.apply_result(s.generation, engine.update(s.strokes))
            canvas.set_mask(s.mask)
            canvas.set_strokes(s.strokes)
            s.save(ws)
            blocked.append(1000 * (time.perf_counter() - t0))
    return blocked


def pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hgr1")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--strokes", type=int, default=5)
    args = ap.parse_args(argv)
    if not (args.data / "images").is_dir():
        sys.exit(f"bench_annotator: {args.data} has no images/ (HGR1 data needed)")
    app = QApplication.instance() or QApplication([])
    from annotator.canvas import Canvas

    print(f"{'frames':>12} {'path':>8} {'GUI blocked ms/stroke med':>26} {'p90':>7} {'max':>7} "
          f"{'stroke->mask ms med':>20} {'p90':>7}")
    for label, size in (("hgr1 native", None), ("1280x720", (1280, 720))):
        with tempfile.TemporaryDirectory() as tmp:
            ws, gts = build_workspace(Path(tmp) / "ws", args.data, args.frames, size)
            radius = 4.0 if size is None else 8.0
            blocked, latency, used = run_app(app, ws, gts, args.strokes, radius)
            ws2, _ = build_workspace(Path(tmp) / "ws2", args.data, args.frames, size)
            canvas = Canvas()
            canvas.resize(1000, 700)
            sync = run_sync(ws2, {f2: gts[f1] for f1, f2 in zip(gts, [f.id for f in ws2.frames()])},
                            {f2: used[f1] for f1, f2 in zip(gts, [f.id for f in ws2.frames()])}, canvas)
            print(f"{label:>12} {'worker':>8} {pct(blocked, 50):>26.1f} {pct(blocked, 90):>7.1f} "
                  f"{max(blocked):>7.1f} {pct(latency, 50):>20.1f} {pct(latency, 90):>7.1f}")
            print(f"{label:>12} {'sync':>8} {pct(sync, 50):>26.1f} {pct(sync, 90):>7.1f} {max(sync):>7.1f} "
                  f"{pct(sync, 50):>20.1f} {pct(sync, 90):>7.1f}")
            print(f"{'':>12} {'':>8} worker/sync GUI blocked (median): {pct(blocked, 50) / pct(sync, 50):.2f}; "
                  f"{len(blocked)} strokes on {len(gts)} frames")
            ws.close()
            ws2.close()


if __name__ == "__main__":
    main()
