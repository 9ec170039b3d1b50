"""The annotator for a long day (issue 10), offscreen with pytest-qt: resume where the person stopped, undo after
reopening, D marks done and moves on, the list's colours and freshness, review with a note, reset of a done
frame, the brush size per workspace, the empty-workspace hint and export from the File menu."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from annotator.window import STATUS_COLOURS  # noqa: E402
from kbh.workspace import Workspace  # noqa: E402
from tests.annotator.helpers import draw, wait_saved  # noqa: E402


def close(win):
    win.close()


def test_reopens_where_the_person_stopped_with_the_same_zoom(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    third = win.controller.frames[2]
    win.open_frame(third.id)
    draw(qtbot, win, [(30, 28), (40, 30)])
    wait_saved(qtbot, win)
    win.open_frame(win.controller.frames[4].id)  # looked at another frame, drew nothing there
    win.open_frame(third.id)
    win.canvas.zoom_by(1.5625)
    zoom = win.canvas.zoom()
    close(win)
    again = open_window(ws_path)
    assert again.controller.current.id == third.id  # the last frame edited, not the first to do
    assert again.canvas.zoom() == pytest.approx(zoom, rel=1e-3)


def test_undo_works_after_reopening(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    draw(qtbot, win, [(30, 28), (40, 30)])
    wait_saved(qtbot, win)
    after_one = win.session.mask.copy()
    draw(qtbot, win, [(5, 50), (20, 50)], button=Qt.MouseButton.RightButton)
    wait_saved(qtbot, win)
    fid = win.session.frame_id
    close(win)
    again = open_window(ws_path)
    again.open_frame(fid)
    assert again.session.undo_count == 2 and again.act_undo.text() == "Undo Background stroke"
    again.act_undo.trigger()
    wait_saved(qtbot, again)
    assert len(again.session.strokes) == 1 and np.array_equal(again.session.mask, after_one)
    again.act_redo.trigger()
    wait_saved(qtbot, again)
    assert len(again.session.strokes) == 2
    assert again.ws.frame(fid).n_strokes == 2


def test_d_marks_done_and_moves_to_the_next_frame_to_do(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    first = win.session
    draw(qtbot, win, [(30, 28), (40, 30)])
    wait_saved(qtbot, win)
    win.act_done.trigger()
    assert first.status == "done" and win.session.frame_id != first.frame_id
    assert win.session.status in ("unlabeled", "prelabeled")
    wait_saved(qtbot, win)
    assert win.ws.frame(first.frame_id).status == "done"
    assert win.row_text(first.frame_id, "Status") == "done"
    row = win._rows[first.frame_id][1]
    assert row.background().color().name() == STATUS_COLOURS["done"]
    win.act_done_advances.trigger()  # switched off: D stays on the frame
    second = win.session
    win.act_done.trigger()
    assert win.session is second and second.status == "done"


def test_review_sends_back_with_a_note_that_the_next_person_sees(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    done = []
    for _ in range(2):
        draw(qtbot, win, [(30, 28), (40, 30)])
        wait_saved(qtbot, win)
        done.append(win.session.frame_id)
        win.act_done.trigger()
    wait_saved(qtbot, win)
    win.act_review_mode.trigger()
    assert win.controller.review_mode and win.session.frame_id in done and win.session.status == "done"
    first = win.session.frame_id
    win.ask_note = lambda: "the thumb is missing"
    win.act_send_back.trigger()  # S
    wait_saved(qtbot, win)
    assert win.ws.frame(first).status == "in_progress" and win.ws.note(first) == "the thumb is missing"
    assert win.session.frame_id == [d for d in done if d != first][0]  # on to the next done frame
    win.act_accept.trigger()  # A
    wait_saved(qtbot, win)
    second = [d for d in done if d != first][0]
    assert win.ws.frame(second).status == "reviewed"
    close(win)
    again = open_window(ws_path)  # the next person opens the frame that was sent back
    again.open_frame(first)
    assert again.note_banner.isVisibleTo(again) and "the thumb is missing" in again.note_banner.text()
    assert "the thumb is missing" in again.statusBar().currentMessage()


def test_reset_of_a_done_frame_makes_it_in_progress(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    win.act_done_advances.trigger()
    draw(qtbot, win, [(30, 28), (40, 30)])
    wait_saved(qtbot, win)
    win.act_done.trigger()
    win.act_reset.trigger()
    wait_saved(qtbot, win)
    f = win.ws.frame(win.session.frame_id)
    assert (f.status, f.n_strokes) == ("in_progress", 0)
    win.act_undo.trigger()  # one step brings strokes and "done" back
    wait_saved(qtbot, win)
    assert win.session.status == "done" and len(win.session.strokes) == 1


def test_the_brush_size_is_kept_per_workspace_relative_to_the_frame(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    f = win.controller.current
    win.set_radius(9)
    diag = np.hypot(f.width, f.height)
    assert float(win.ws.setting("annotator.brush_fraction")) == pytest.approx(9 / diag)
    close(win)
    again = open_window(ws_path)
    assert again.canvas.radius == pytest.approx(9, rel=1e-3)
    big = type(f)(**{**f.__dict__, "width": f.width * 4, "height": f.height * 4})
    assert again.controller.brush_radius(big) == pytest.approx(36, rel=1e-3)  # the same size on screen


def test_an_empty_workspace_shows_how_to_start(qtbot, open_window, tmp_path):
    Workspace.init(tmp_path / "empty").close()
    win = open_window(tmp_path / "empty")
    assert win.hint.isVisibleTo(win) and not win.canvas.isVisibleTo(win)
    assert "kbh import" in win.hint.text() and "left button" in win.hint.text()


def test_export_from_the_file_menu(qtbot, open_window, ws_path, tmp_path):
    win = open_window(ws_path)
    win.act_done_advances.trigger()
    draw(qtbot, win, [(30, 28), (40, 30)])
    wait_saved(qtbot, win)
    win.act_done.trigger()
    assert win.export_masks("png", str(tmp_path / "png")) == 1
    assert len(list((tmp_path / "png" / "masks").rglob("*.png"))) == 1
    assert win.export_masks("coco", str(tmp_path / "c.json")) == 1 and (tmp_path / "c.json").stat().st_size > 0


def test_recent_workspaces_and_opening_another(qtbot, open_window, ws_path, tmp_path):
    from tests.annotator.helpers import make_workspace

    make_workspace(tmp_path / "other").close()
    win = open_window(ws_path)
    other = win.open_workspace(str(tmp_path / "other"))
    qtbot.addWidget(other)
    assert other is not None and other.ws.root == tmp_path / "other" and not win.isVisible()
    assert str(ws_path.resolve()) in other._recent()
    other.close()
    other.worker.stop()


def click(qtbot, win, x, y, button=Qt.MouseButton.LeftButton):
    from tests.annotator.helpers import view_pos

    qtbot.mouseClick(win.canvas.viewport(), button, pos=view_pos(win, x, y))


def test_paint_tool_sets_pixels_and_undoes_after_reopening(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    draw(qtbot, win, [(30, 28), (40, 30)])  # a hint: the engine's mask
    wait_saved(qtbot, win)
    engine_mask = win.session.mask.copy()
    win.act_paint.trigger()
    win.set_radius(3)
    draw(qtbot, win, [(5, 50), (15, 50)])  # paints hand where the engine said background
    wait_saved(qtbot, win)
    s = win.session
    assert s.strokes[-1].kind == "paint" and s.mask[50, 10] == 1 and engine_mask[50, 10] == 0
    assert win.ws.frame(s.frame_id).source == "manual"
    fid = s.frame_id
    close(win)
    again = open_window(ws_path)
    again.open_frame(fid)
    assert again.session.mask[50, 10] == 1 and again.act_undo.text() == "Undo Foreground paint"
    again.act_undo.trigger()
    wait_saved(qtbot, again)
    assert np.array_equal(again.session.mask, engine_mask) and again.ws.frame(fid).source == "grabcut"


def test_polygon_tool_and_undo_after_reopening(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    win.act_polygon.trigger()
    for x, y in ((5, 5), (25, 5), (25, 20), (5, 20)):
        click(qtbot, win, x, y)
    click(qtbot, win, 5, 5)  # back on the first vertex: closed
    wait_saved(qtbot, win)
    s = win.session
    assert s.strokes[-1].kind == "polygon" and len(s.strokes[-1].points) == 4
    assert s.mask[8:18, 8:22].all() and s.status == "in_progress"
    for x, y in ((40, 40), (55, 40), (55, 55)):
        click(qtbot, win, x, y, Qt.MouseButton.RightButton)  # a background polygon, closed with Enter
    qtbot.keyClick(win.canvas, Qt.Key.Key_Return)
    wait_saved(qtbot, win)
    assert s.strokes[-1].label == 0 and len(s.strokes) == 2
    fid = s.frame_id
    close(win)
    again = open_window(ws_path)
    again.open_frame(fid)
    assert again.session.undo_text == "Background polygon"
    again.act_undo.trigger()
    again.act_undo.trigger()
    wait_saved(qtbot, again)
    assert again.session.strokes == [] and not again.session.mask[8:18, 8:22].any()


def test_the_eraser_cuts_strokes_and_undoes_after_reopening(qtbot, open_window, ws_path):
    win = open_window(ws_path)
    draw(qtbot, win, [(30, 28), (40, 30)])
    wait_saved(qtbot, win)
    draw(qtbot, win, [(5, 50), (40, 50)], button=Qt.MouseButton.RightButton)
    wait_saved(qtbot, win)
    win.act_eraser.trigger()
    win.set_radius(2)
    draw(qtbot, win, [(20, 46), (20, 54)])  # across the middle of the background stroke
    wait_saved(qtbot, win)
    assert [st.label for st in win.session.strokes] == [1, 0, 0]
    fid = win.session.frame_id
    close(win)
    again = open_window(ws_path)
    again.open_frame(fid)
    assert again.session.undo_text == "Erase from 1 stroke"
    again.act_undo.trigger()
    wait_saved(qtbot, again)
    assert [st.label for st in again.session.strokes] == [1, 0] and again.ws.frame(fid).n_strokes == 2
