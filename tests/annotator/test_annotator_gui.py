"""The annotator's widgets, driven like a person would (pytest-qt, offscreen): strokes drawn with the mouse on the
canvas viewport, the mask computed in the worker, undo/redo, frame switching, kill-and-reopen, settings."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from annotator.window import COLUMNS, AnnotatorWindow  # noqa: E402
from kbh.workspace import Workspace  # noqa: E402
from tests.annotator.helpers import draw, view_pos, wait_saved  # noqa: E402


def test_draw_undo_redo_switch_frames(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    s = win.session
    fid = s.frame_id
    assert win.table.rowCount() == 5 and not s.mask.any()
    win.set_radius(3)
    draw(qtbot, win, [(30, 28), (35, 29), (40, 30), (45, 30)])  # foreground over the blob
    assert s.strokes and s.strokes[0].label == 1 and len(s.strokes[0].points) >= 2
    wait_saved(qtbot, win)
    after_fg = s.mask.copy()
    assert after_fg.sum() > 100 and s.status == "in_progress"
    assert np.array_equal(win.ws.mask(fid), after_fg)  # autosaved
    assert win.table.item(0, COLUMNS.index("Status")).text() == "in progress"
    draw(qtbot, win, [(5, 50), (20, 50)], button=Qt.MouseButton.RightButton)  # right button = background
    wait_saved(qtbot, win)
    draw(qtbot, win, [(8, 8)])  # a click is a dot stroke (foreground on the background)
    wait_saved(qtbot, win)
    assert [st.label for st in s.strokes] == [1, 0, 1]
    after_all = s.mask.copy()
    assert not np.array_equal(after_all, after_fg)
    assert s.undo_count == 3 and "stroke" in s.undo_text.lower() and "stroke" in win.act_undo.text().lower()
    win.act_undo.trigger()
    win.act_undo.trigger()
    wait_saved(qtbot, win)
    assert len(s.strokes) == 1 and np.array_equal(s.mask, after_fg)
    assert np.array_equal(win.ws.mask(fid), after_fg) and win.ws.frame(fid).n_strokes == 1
    win.act_redo.trigger()
    win.act_redo.trigger()
    wait_saved(qtbot, win)
    assert len(s.strokes) == 3 and np.array_equal(s.mask, after_all)
    # switch to another frame and back: each frame keeps its own history
    win.go_todo(1)
    other = win.session
    assert other.frame_id != fid and win.session.undo_count == 0 and not other.strokes
    draw(qtbot, win, [(40, 30), (41, 31)])
    wait_saved(qtbot, win)
    win.go_neighbour(-1)
    assert win.session is s and win.session.undo_count == 3 and win.session.can_undo()
    assert len(win.canvas._strokes_items) == 3


def test_kill_and_reopen_keeps_the_work(qtbot, open_window, ws_path):
    win = open_window(ws_path, register=False)
    first = win.session
    draw(qtbot, win, [(30, 30), (45, 30)])
    wait_saved(qtbot, win)
    draw(qtbot, win, [(3, 3), (3, 40)], button=Qt.MouseButton.RightButton)
    wait_saved(qtbot, win)
    win.act_done.trigger()
    wait_saved(qtbot, win)
    win.go_todo(1)
    second = win.session
    win.set_tool("background")
    draw(qtbot, win, [(38, 30), (42, 30)])
    wait_saved(qtbot, win)
    expected = {first.frame_id: (first.mask.copy(), list(first.strokes), "done"),
                second.frame_id: (second.mask.copy(), list(second.strokes), "in_progress")}
    # kill: no close handlers, no final save; the worker thread is only stopped so the test ends cleanly
    win.autosave_timer.stop()
    win.worker.stop()
    win.saver.stop(drain=False)
    win.hide()
    del win
    again = open_window(ws_path)
    for fid, (mask, strokes, status) in expected.items():
        again.open_frame(fid)
        s = again.session
        assert s.strokes == strokes and np.array_equal(s.mask, mask) and s.status == status
        assert s.settled and not s.needs_engine
        assert len(again.canvas._strokes_items) == len(strokes)
    # work goes on after reopening: a new stroke refines the restored frame
    again.open_frame(second.frame_id)
    draw(qtbot, again, [(10, 10)])
    wait_saved(qtbot, again)
    assert again.ws.frame(second.frame_id).n_strokes == len(expected[second.frame_id][1]) + 1


def test_real_engine_in_the_worker(qtbot, open_window, ws_path):
    pytest.importorskip("kbh.grabcut")
    win = open_window(ws_path, engine_factory=None)  # the real GrabCut engine
    s = win.session
    image = win.ws.image(s.frame_id)
    gt = image.mean(axis=2) > 100
    ys, xs = np.nonzero(gt)
    cy, cx = int(ys.mean()), int(xs.mean())
    win.set_radius(2)
    draw(qtbot, win, [(cx - 4, cy), (cx + 4, cy)])
    wait_saved(qtbot, win)
    draw(qtbot, win, [(2, 2), (77, 2), (77, 57), (2, 57), (2, 2)], button=Qt.MouseButton.RightButton)
    wait_saved(qtbot, win)
    iou = (s.mask.astype(bool) & gt).sum() / (s.mask.astype(bool) | gt).sum()
    assert iou > 0.8, iou
    assert np.array_equal(win.ws.mask(s.frame_id), s.mask)


def test_tools_view_filters_help_and_settings(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    s = win.session
    draw(qtbot, win, [(30, 30), (45, 30)])
    wait_saved(qtbot, win)
    draw(qtbot, win, [(5, 5), (20, 5)], button=Qt.MouseButton.RightButton)
    wait_saved(qtbot, win)
    win.act_eraser.trigger()
    assert win.canvas.tool == "eraser"
    draw(qtbot, win, [(12, 3), (12, 8)])  # crosses the background stroke only: it is cut in two
    wait_saved(qtbot, win)
    assert [st.label for st in s.strokes] == [1, 0, 0]
    left, right = s.strokes[1], s.strokes[2]
    assert max(x for x, _ in left.points) < 12 < min(x for x, _ in right.points)
    assert min(x for x, _ in left.points) == pytest.approx(5, abs=1) and max(x for x, _ in right.points) == \
        pytest.approx(20, abs=1)
    win.act_undo.trigger()
    wait_saved(qtbot, win)
    assert [st.label for st in s.strokes] == [1, 0]
    # brush size and cursor, opacity, overlay toggle, zoom
    win.set_radius(4)
    next(a for a in win.shortcut_actions if a.text() == "Larger brush").trigger()
    assert win.canvas.radius == pytest.approx(5.0) and win.radius_box.value() == pytest.approx(5.0)
    qtbot.mouseMove(win.canvas.viewport(), pos=view_pos(win, 40, 30))
    assert win.canvas._cursor.isVisible() and win.canvas._cursor.rect().width() == pytest.approx(10.0)
    win.set_opacity(0.7)
    assert win.opacity_slider.value() == 70
    fill_alpha = win.canvas._overlay_item.pixmap().toImage().pixelColor(*[int(v) for v in np.argwhere(
        win.canvas._overlay_values == 1)[0][::-1]]).alpha()
    assert fill_alpha == pytest.approx(0.7 * 255, abs=2)
    win.act_overlay.trigger()
    assert not win.canvas.overlay_visible and not win.canvas._overlay_item.isVisible()
    win.act_overlay.trigger()
    assert win.canvas._overlay_item.isVisible()
    z = win.canvas.zoom()
    vp = win.canvas.viewport()
    pos = QPointF(view_pos(win, 40, 30))
    wheel = QWheelEvent(pos, QPointF(vp.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(vp, wheel)
    assert win.canvas.zoom() == pytest.approx(z * 1.5625)
    win.canvas.fit()
    assert win.canvas.zoom() == pytest.approx(z)
    # filters and progress
    win.person_filter.setCurrentIndex(win.person_filter.findData("p2"))
    assert win.table.rowCount() == 2 and {win.table.item(r, COLUMNS.index("Person")).text() for r in range(2)} == {"p2"}
    win.person_filter.setCurrentIndex(0)
    win.act_done.trigger()
    wait_saved(qtbot, win)
    assert win.progress.value() == 1 and win.progress.maximum() == 5
    win.status_filter.setCurrentIndex(win.status_filter.findData("done"))
    assert win.table.rowCount() == 1
    win.status_filter.setCurrentIndex(0)
    # help lists the shortcuts shown in the menus
    win.show_help()
    keys = dict(win.shortcut_table())
    assert keys["Undo"] == "Ctrl+Z" and keys["Mark done"] == "D" and keys["Foreground brush (hand)"] == "F"
    assert keys["Keyboard shortcuts"] == "F1" and win.help_dialog.table.rowCount() == len(keys)
    win.help_dialog.close()
    # a single-key shortcut reaches its action from the keyboard
    win.activateWindow()
    win.canvas.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not None)
    qtbot.keyClick(win.canvas, Qt.Key.Key_B)
    assert win.canvas.tool == "background" and win.act_bg.isChecked()
    # settings survive a clean close
    win.close()
    again = open_window(ws_path)
    assert again.canvas.radius == pytest.approx(5.0) and again.canvas.opacity == pytest.approx(0.7)


def test_propagate_to_next_frame(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    first = win.session
    draw(qtbot, win, [(30, 30), (45, 30)])
    wait_saved(qtbot, win)
    win.act_propagate.trigger()
    nxt = win.session
    # the source frame keeps its status (done is the person's call) and its undo history has no "Mark done"
    assert nxt.frame_id != first.frame_id and first.status == "in_progress" and first.undo_text != "Mark done"
    assert nxt.origin == "propagated" and np.array_equal(nxt.mask, first.mask)
    assert win.ws.frame(nxt.frame_id).status == "prelabeled"
    # the list follows at once: no navigation needed to see the new status
    row = win.controller.row_of(nxt.frame_id)
    assert win.table.item(row, COLUMNS.index("Status")).text() == "prelabeled"
    assert win.table.item(win.controller.row_of(first.frame_id), COLUMNS.index("Status")).text() == "in progress"
    draw(qtbot, win, [(10, 50)], button=Qt.MouseButton.RightButton)
    wait_saved(qtbot, win)
    f = win.ws.frame(nxt.frame_id)
    assert (f.status, f.source, f.n_strokes) == ("in_progress", "propagated", 1)


KILL_SCRIPT = r"""
import os, signal, sys, tempfile
import numpy as np
from PySide6.QtCore import QPointF, QSettings, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from annotator.window import AnnotatorWindow
from kbh.workspace import Workspace

app = QApplication([])
settings = QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.Format.IniFormat)
win = AnnotatorWindow(Workspace.open(sys.argv[1]), settings=settings, annotator="killed")
win.resize(800, 600)
win.show()
QTest.qWaitForWindowExposed(win)
win.set_radius(3)

def draw(points, button=Qt.MouseButton.LeftButton):
    vp = win.canvas.viewport()
    pos = [win.canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)) for x, y in points]
    QTest.mousePress(vp, button, Qt.KeyboardModifier.NoModifier, pos[0])
    for p in pos[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, button, Qt.KeyboardModifier.NoModifier, pos[-1])

def settle():
    for _ in range(1000):
        if win.all_saved():
            return
        QTest.qWait(10)
    raise SystemExit("engine or saver never finished")

draw([(30, 30), (45, 30)])
settle()
draw([(5, 50), (20, 50)], Qt.MouseButton.RightButton)
settle()
np.save(sys.argv[2], win.session.mask)
draw([(10, 10)])  # the last stroke: killed before its mask is computed and saved
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_loses_at_most_the_last_stroke(tmp_path, ws_path, open_window):
    import os
    import subprocess
    import sys

    pytest.importorskip("kbh.grabcut")  # the killed app runs the real engine
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(root)}
    mask_file = tmp_path / "mask_after_two.npy"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(ws_path), str(mask_file)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    ws = Workspace.open(ws_path)
    saved = [f for f in ws.frames() if f.n_strokes]
    assert len(saved) == 1 and saved[0].n_strokes in (2, 3) and saved[0].status == "in_progress"
    strokes = ws.strokes(saved[0].id)
    assert [s.label for s in strokes][:2] == [1, 0]
    if saved[0].n_strokes == 2:  # the usual case: the last stroke was still in the engine
        assert np.array_equal(ws.mask(saved[0].id), np.load(mask_file))
    win = open_window(ws_path)  # reopening shows exactly what was saved
    win.open_frame(saved[0].id)
    assert win.session.strokes == strokes and np.array_equal(win.session.mask, ws.mask(saved[0].id))
    ws.close()


def test_pyside_refcount_workaround_is_active():
    import sys

    from annotator.qtcompat import immortalize_singletons

    if sys.version_info >= (3, 12):
        assert not immortalize_singletons()  # immortal already
    else:
        assert sys.getrefcount(None) > 2**39 and sys.getrefcount(True) > 2**39 and sys.getrefcount(False) > 2**39


def test_follow_queue_action_drives_next(qtbot, open_window, ws_path):
    ws = Workspace.open(ws_path)
    frames = ws.frames()
    ws.save_prediction(frames[4].id, "m", np.full((frames[4].height, frames[4].width), 0.5, np.float32), 0.7)
    ws.close()
    win = open_window(ws_path)
    win.act_follow_queue.trigger()
    assert win.controller.follow_queue and win.act_follow_queue.isChecked()
    win.go_todo(1)
    assert win.controller.current.id == frames[4].id
