"""Annotator responsiveness: how long the GUI thread is blocked per stroke, with the engine in the worker (the
app) against the engine run synchronously on the GUI thread (the baseline), both in this process on the same frames
and the same strokes, plus the latency from mouse-up to the new mask painted on the canvas.

The strokes reach the app as real Qt mouse events on the canvas viewport (QTest press / moves / release, the
right button for background), so the measured path is the person's: the canvas's release handler, the window,
the worker, the result back on the GUI thread, the overlay, and the viewport's paint. "mouse-up -> painted" runs
from just before the release event to the end of the first viewport paint that shows the stroke's mask
(`Canvas.painted_serial` / `painted_at`).

Frames: real HGR1 photographs resized to 230x306 and to 1280x720 (`--sizes`; "native" keeps their own size).
Strokes: the simulated annotator (kbh.simulated_annotator.next_stroke) correcting the current mask against the HGR1 mask.
Engine: GrabCut (default) or a trained model (`--engine model --checkpoint C`, through kbh.engines). Offscreen Qt.
On a loaded machine run the model with OMP_WAIT_POLICY=PASSIVE: torch's spinning OpenMP threads on the GUI thread
(the sync baseline) otherwise take ~1 s per update on 2 busy cores, against a few ms once the load is gone.

    QT_QPA_PLATFORM=offscreen kbh bench annotator [--data ../shared/data/hgr1]
        [--frames 4] [--strokes 5] [--sizes 230x306,1280x720] [--engine grabcut|model --checkpoint C] [--no-sync]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF, QSettings, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from annotator.engines import build_engine
from annotator.session import FrameSession
from annotator.window import AnnotatorWindow
from kbh.errors import KbhError
from kbh.simulated_annotator import next_stroke
from kbh.strokes import FOREGROUND
from kbh.workspace import Workspace


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
        fid = ws.add_image("bench", i, cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        gts[fid] = gt
    return ws, gts


def wait(app, cond, timeout_s=60.0, what="engine result"):
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"no {what} after {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.0005)


def mouse_stroke(win, stroke):
    """Press, moves and release on the canvas viewport along `stroke` (image pixels); returns the perf_counter()
    taken just before the release and the time the release took to handle (GUI thread, synchronous)."""
    canvas = win.canvas
    vp = canvas.viewport()
    button = Qt.MouseButton.LeftButton if stroke.label == FOREGROUND else Qt.MouseButton.RightButton
    pos = [canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)) for x, y in stroke.points]
    none = Qt.KeyboardModifier.NoModifier
    QTest.mousePress(vp, button, none, pos[0])
    for p in pos[1:]:
        QTest.mouseMove(vp, p)
    t0 = time.perf_counter()
    QTest.mouseRelease(vp, button, none, pos[-1])
    return t0, 1000 * (time.perf_counter() - t0)


def run_app(app, ws, gts, n_strokes, radius, engine):
    """GUI-thread ms per stroke (release handling + result handling) and mouse-up -> painted mask latency, in the
    app, driven by mouse events."""
    blocked, latency, strokes_used = [], [], {}
    handle_ms = []
    original = AnnotatorWindow.on_result

    def timed_on_result(self, *a):
        t = time.perf_counter()
        original(self, *a)
        handle_ms.append(1000 * (time.perf_counter() - t))

    AnnotatorWindow.on_result = timed_on_result
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)
    win = AnnotatorWindow(ws, settings=settings, engine=engine)
    win.resize(1280, 800)
    win.show()
    QTest.qWaitForWindowExposed(win)
    canvas = win.canvas
    try:
        for fid, gt in gts.items():
            win.open_frame(fid)
            win.set_tool("foreground")
            win.set_radius(radius)
            wait(app, lambda: canvas.painted_serial == canvas.mask_serial, what="paint of the opened frame")
            s = win.session
            strokes_used[fid] = []
            for _ in range(n_strokes):
                stroke = next_stroke(s.mask, gt, radius=radius, length=max(20, gt.shape[1] // 20))
                if stroke is None:
                    break
                handle_ms.clear()
                generation, serial = s.generation, canvas.mask_serial
                t0, release_ms = mouse_stroke(win, stroke)
                if s.generation == generation:  # nothing drawn (off the frame): no engine run to wait for
                    continue
                strokes_used[fid].append(s.strokes[-1])  # the stroke as the canvas made it from the events
                wait(app, lambda: (s.settled and canvas.mask_serial > serial
                                   and canvas.painted_serial == canvas.mask_serial))
                latency.append(1000 * (canvas.painted_at - t0))
                blocked.append(release_ms + sum(handle_ms))
                wait(app, win.all_saved, what="save")  # the next stroke starts from a quiet app
    finally:
        engine_label = win.engine.label  # the engines' own label once one was built
        win.close()
        AnnotatorWindow.on_result = original
    return blocked, latency, strokes_used, engine_label


def run_sync(ws, gts, strokes_used, canvas, engine):
    """Baseline: the same strokes with the engine on the GUI thread (update, overlay, save all block it)."""
    blocked = []
    for fid, strokes in strokes_used.items():
        image = ws.image(fid)
        s = FrameSession(fid, np.zeros(gts[fid].shape, np.uint8))
        eng = engine.factory(image, None)
        canvas.set_image(image)
        for stroke in strokes:
            t0 = time.perf_counter()
            s.add_stroke(stroke)
            s.apply_result(s.generation, eng.update(s.strokes))
            canvas.set_mask(s.mask)
            canvas.set_strokes(s.strokes)
            s.save(ws)
            blocked.append(1000 * (time.perf_counter() - t0))
    return blocked


def parse_size(text):
    if text == "native":
        return "hgr1 native", None
    w, h = (int(v) for v in text.lower().split("x"))
    return f"{w}x{h}", (w, h)


def pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="kbh bench annotator", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hgr1")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--strokes", type=int, default=5)
    ap.add_argument("--sizes", default="230x306,1280x720",
                    help="comma-separated WxH frame sizes (HGR1 frames resized), or 'native'")
    ap.add_argument("--engine", default="grabcut", help="grabcut (default) or model (needs --checkpoint)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint of the model engine")
    ap.add_argument("--no-sync", action="store_true", help="skip the synchronous baseline")
    args = ap.parse_args(argv)
    if not (args.data / "images").is_dir():
        sys.exit(f"bench_annotator: {args.data} has no images/ (HGR1 data needed)")
    try:
        sizes = [parse_size(s.strip()) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        sys.exit(f"bench_annotator: --sizes {args.sizes!r}: expected WxH[,WxH...] or native")
    try:
        engine = build_engine(args.engine, args.checkpoint)
    except KbhError as e:
        sys.exit(f"bench_annotator: {e}")
    app = QApplication.instance() or QApplication([])
    from annotator.canvas import Canvas

    print(f"engine: {engine.label}" + (f" ({engine.checkpoint})" if engine.checkpoint else ""))
    print(f"{'frames':>12} {'path':>8} {'GUI blocked ms/stroke med':>26} {'p90':>7} {'max':>7} "
          f"{'mouse-up->painted ms med':>25} {'p90':>7}")
    for label, size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            ws, gts = build_workspace(Path(tmp) / "ws", args.data, args.frames, size)
            longest = max(g.shape[0] for g in gts.values()) if size is None else max(size)
            radius = 4.0 if longest <= 400 else 8.0
            blocked, latency, used, engine_label = run_app(app, ws, gts, args.strokes, radius, engine)
            if engine_label != engine.label:
                print(f"{'':>12} engine reports itself as: {engine_label}")
                engine = dataclasses.replace(engine, label=engine_label)
            if not blocked:
                print(f"{label:>12} no stroke was drawn")
                ws.close()
                continue
            print(f"{label:>12} {'worker':>8} {pct(blocked, 50):>26.1f} {pct(blocked, 90):>7.1f} "
                  f"{max(blocked):>7.1f} {pct(latency, 50):>25.1f} {pct(latency, 90):>7.1f}")
            if not args.no_sync:
                ws2, _ = build_workspace(Path(tmp) / "ws2", args.data, args.frames, size)
                ids2 = [f.id for f in ws2.frames()]
                canvas = Canvas()
                canvas.resize(1000, 700)
                sync = run_sync(ws2, {f2: gts[f1] for f1, f2 in zip(gts, ids2)},
                                {f2: used[f1] for f1, f2 in zip(gts, ids2)}, canvas, engine)
                print(f"{label:>12} {'sync':>8} {pct(sync, 50):>26.1f} {pct(sync, 90):>7.1f} {max(sync):>7.1f} "
                      f"{pct(sync, 50):>25.1f} {pct(sync, 90):>7.1f}")
                print(f"{'':>12} {'':>8} worker/sync GUI blocked (median): "
                      f"{pct(blocked, 50) / pct(sync, 50):.2f}; {len(blocked)} strokes on {len(gts)} frames")
                ws2.close()
            else:
                print(f"{'':>12} {'':>8} {len(blocked)} strokes on {len(gts)} frames")
            ws.close()


if __name__ == "__main__":
    main()
