"""The annotator's Qt-free parts: per-frame session (undo/redo of compact differences, engine results, time,
saving and restoring) and the controller (queue, filters, progress, propagation)."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.controller import Controller
from annotator.session import IDLE_CAP_S, FrameSession, MaskDiff
from kbh.errors import KbhError
from kbh.strokes import BACKGROUND, FOREGROUND, Stroke, rasterize, scribbles
from kbh.workspace import Workspace, propagated_model
from tests.annotator.helpers import H, W, add_png, fake_engine, make_workspace  # noqa: F401
from tests.helpers import blob_image

def fg(*pts, r=3.0):
    return Stroke(FOREGROUND, r, tuple(pts))


def bg(*pts, r=3.0):
    return Stroke(BACKGROUND, r, tuple(pts))


def run_engine(session, image):
    """What the GUI's worker does, synchronously: compute the current stroke list and hand the result back."""
    assert session.needs_engine
    return session.apply_result(session.generation, fake_engine(image).update(scribbles(session.strokes)))


@pytest.fixture
def ws(tmp_path):
    w = make_workspace(tmp_path / "ws")
    yield w
    w.close()


def test_mask_diff_is_sparse_and_reversible():
    a = np.zeros((H, W), np.uint8)
    b = a.copy()
    b[10:12, 20:25] = 1
    d = MaskDiff.between(a, b)
    assert len(d) == 10 and d.old.tolist() == [0] * 10 and d.new.tolist() == [1] * 10
    m = a.copy()
    d.apply(m)
    assert np.array_equal(m, b)
    d.revert(m)
    assert np.array_equal(m, a)


def test_stroke_undo_redo_restores_every_mask_exactly(ws):
    frame = ws.frames()[0]
    image = ws.image(frame)
    s = FrameSession.load(ws, frame)
    assert s.status == "unlabeled" and s.settled and not s.needs_engine
    masks = [s.mask.copy()]
    strokes = [fg((40, 30), (42, 31)), bg((28, 25), (34, 25)), fg((10, 50)), bg((45, 30), r=2)]
    for st in strokes:
        change = s.add_stroke(st)
        assert not s.settled and s.mask is not None
        assert not s.apply_result(s.generation - 1, np.ones((H, W), np.uint8))  # stale: dropped
        assert run_engine(s, image)
        masks.append(s.mask.copy())
        assert change.mask is not None and change.settled
    assert s.status == "in_progress"
    assert len({m.tobytes() for m in masks}) == len(masks)  # every stroke moved the mask
    # the history holds differences, not copies: far less than one mask per step
    assert 0 < s.history_nbytes() < len(strokes) * s.mask.nbytes
    for k in range(len(strokes), 0, -1):
        s.undo()
        assert np.array_equal(s.mask, masks[k - 1]) and s.strokes == strokes[: k - 1] and s.settled
    assert s.status == "unlabeled" and s.undo() is None
    for k in range(1, len(strokes) + 1):
        s.redo()
        assert np.array_equal(s.mask, masks[k]) and s.strokes == strokes[:k]
    assert s.redo() is None


def test_late_result_after_undo_rebases_the_redo_chain(ws):
    frame = ws.frames()[0]
    image = ws.image(frame)
    s = FrameSession.load(ws, frame)
    a, b = fg((40, 30)), bg((10, 10), (30, 10))
    s.add_stroke(a)
    gen_a = s.generation
    s.add_stroke(b)  # before A's result: A's result is now stale
    assert not s.apply_result(gen_a, fake_engine(image).update([a]))
    assert run_engine(s, image)
    mask_ab = s.mask.copy()
    s.undo()  # back to [A], which never got its mask
    assert s.strokes == [a] and s.needs_engine
    assert run_engine(s, image)
    mask_a = s.mask.copy()
    assert np.array_equal(mask_a, fake_engine(image).update([a]))
    s.redo()
    assert np.array_equal(s.mask, mask_ab) and s.settled
    s.undo()
    assert np.array_equal(s.mask, mask_a)


def test_erase_reset_and_status_are_undoable(ws):
    frame = ws.frames()[0]
    image = ws.image(frame)
    s = FrameSession.load(ws, frame)
    strokes = [fg((40, 30), (44, 30)), bg((5, 5), (15, 5)), fg((70, 50))]
    for st in strokes:
        s.add_stroke(st)
        run_engine(s, image)
    before = s.mask.copy()
    assert s.erase([(100, 100)], 2) is None  # off every stroke: nothing to do
    change = s.erase([(10, 8), (12, 8)], 3)  # touches the middle of the background stroke only: cut in two
    assert change.removed == ((1, strokes[1]),) and [st.label for st in s.strokes] == [1, 0, 0, 1]
    left, right = s.strokes[1], s.strokes[2]
    assert left.points[0] == (5.0, 5.0) and right.points[-1] == (15.0, 5.0)
    assert max(x for x, _ in left.points) < 10 and min(x for x, _ in right.points) > 12
    assert s.strokes[0] == strokes[0] and s.strokes[3] == strokes[2]
    run_engine(s, image)
    s.undo()
    assert s.strokes == strokes and np.array_equal(s.mask, before)
    s.redo()
    run_engine(s, image) if s.needs_engine else None
    s.undo()
    s.reset()
    assert s.strokes == [] and not s.mask.any() and s.settled
    s.undo()
    assert s.strokes == strokes and np.array_equal(s.mask, before)
    s.set_status("done")
    assert s.status == "done"
    s.undo()
    assert s.status == "in_progress"
    assert s.set_status("in_progress") is None


def test_time_spent_caps_idle_gaps(ws):
    t = [100.0]
    s = FrameSession.load(ws, ws.frames()[0], clock=lambda: t[0])
    s.activity()
    t[0] += 4.0
    s.activity()
    t[0] += 1000.0  # away for a long time: counts as the idle cap
    s.activity()
    s.pause()
    t[0] += 50.0  # after pause, the next activity starts a new interval
    s.activity()
    assert s.pending_seconds == pytest.approx(4.0 + IDLE_CAP_S)


def test_save_and_reload_restores_strokes_mask_status_time(ws):
    frame = ws.frames()[1]
    image = ws.image(frame)
    t = [0.0]
    s = FrameSession.load(ws, frame, clock=lambda: t[0])
    s.activity()
    s.add_stroke(fg((40, 30), (45, 32)))
    assert not s.save(ws, "ann")  # unsettled: the stored mask must belong to the stored strokes
    run_engine(s, image)
    s.add_stroke(bg((3, 3), (20, 3), r=2.5))
    run_engine(s, image)
    t[0] += 7.5
    s.activity()
    assert s.save(ws, "ann") and not s.dirty
    f = ws.frame(frame.id)
    assert (f.status, f.source, f.annotator, f.n_strokes, f.seconds) == ("in_progress", "grabcut", "ann", 2, 7.5)
    again = FrameSession.load(Workspace.open(ws.root), frame.id)
    assert again.strokes == s.strokes and np.array_equal(again.mask, s.mask) and again.status == "in_progress"
    assert again.settled and not again.needs_engine
    # The person's own result is not the engine's prior: the mask stays a function of the strokes across sessions.
    assert again.prior is None


def test_model_prediction_opens_as_starting_mask_and_prior(ws):
    frame = ws.frames()[0]
    image = ws.image(frame)
    prob = np.zeros((H, W), np.float32)
    prob[20:40, 30:50] = 0.9
    prob[0:5, 0:5] = 0.3
    ws.save_prediction(frame.id, "unet-b", prob, uncertainty=0.2)
    s = FrameSession.load(ws, frame.id)
    assert s.status == "prelabeled" and s.origin == "model" and s.source == "model"
    assert np.array_equal(s.mask, (prob >= 0.5).astype(np.uint8)) and s.prior is not None
    assert s.mask.sum() == 400
    s.add_stroke(bg((35, 25), r=2))
    run_engine(s, image)
    s.save(ws, "ann")
    assert ws.frame(frame.id).source == "model"
    s.reset()  # back to the pre-annotation, not to nothing
    assert np.array_equal(s.mask, (prob >= 0.5).astype(np.uint8))


def test_controller_queue_filters_progress(ws):
    c = Controller(ws)
    assert [f.person_id for f in c.frames] == ["p1"] * 3 + ["p2"] * 2
    first = c.next_todo()
    assert first.id == c.frames[0].id
    s = c.open(first.id)
    s.set_status("done")
    c.save(s)
    assert c.progress()["labeled"] == 1 and c.progress()["unlabeled"] == 4 and c.progress()["total"] == 5
    assert c.next_todo().id == c.frames[1].id
    assert c.next_todo(-1).id == c.frames[4].id  # wraps around
    assert [f.person_id for f in c.set_filter(person="p2")] == ["p2", "p2"]
    assert len(c.set_filter(status="done")) == 1
    with pytest.raises(KbhError, match="unknown status"):
        c.set_filter(status="finished")


def test_propagate_starts_next_frame_from_this_mask(ws):
    c = Controller(ws, annotator="ann")
    frames = ws.frames(sequence="s1")
    s = c.open(frames[0].id)
    s.add_stroke(fg((40, 30), r=4))
    run_engine(s, ws.image(frames[0]))
    s.set_status("done")
    c.save(s)
    nxt = c.propagate()
    assert nxt.id == frames[1].id and nxt.status == "prelabeled"
    assert ws.prediction(nxt.id).model == propagated_model()
    s2 = c.open(nxt.id)
    assert s2.origin == "propagated" and np.array_equal(s2.mask, s.mask) and np.array_equal(s2.prior > 0.5, s.mask)
    s2.add_stroke(fg((10, 10)))
    run_engine(s2, ws.image(nxt))
    c.save(s2)
    assert ws.frame(nxt.id).source == "propagated"
    c.open(frames[0].id)
    with pytest.raises(KbhError, match="not overwriting"):  # frame 1 now holds a person's work
        c.propagate()
    c.open(frames[2].id)
    with pytest.raises(KbhError, match="last frame"):
        c.propagate()


def test_real_engine_end_to_end(ws):
    pytest.importorskip("kbh.grabcut")
    from kbh.grabcut import GrabCutSession

    frame = ws.frames()[0]
    image = ws.image(frame)
    gt = (image.mean(axis=2) > 100).astype(np.uint8)
    ys, xs = np.nonzero(gt)
    cy, cx = int(ys.mean()), int(xs.mean())
    s = FrameSession.load(ws, frame)
    engine = GrabCutSession(image, prior=s.prior)
    s.add_stroke(fg((cx - 3, cy), (cx + 3, cy), r=2))
    s.apply_result(s.generation, engine.update(s.strokes))
    s.add_stroke(bg((2, 2), (W - 3, 2), (W - 3, H - 3), (2, H - 3), (2, 2), r=2))
    assert s.apply_result(s.generation, engine.update(s.strokes))
    iou = (s.mask & gt).sum() / (s.mask | gt).sum()
    assert iou > 0.8, iou
    s.save(ws, "ann")
    assert np.array_equal(ws.mask(frame.id), s.mask)


def test_annotate_command_refuses_a_folder_that_is_no_workspace(tmp_path, capsys):
    from kbh.cli import main

    assert main(["annotate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kbh: error: ") and "not a kbh workspace" in err and len(err.strip().splitlines()) == 1
    make_workspace(tmp_path / "ws").close()
    assert main(["annotate", str(tmp_path / "ws"), "--frame", "p9_s9/00000"]) == 2
    assert "no frame with key 'p9_s9/00000'" in capsys.readouterr().err


def test_next_follows_the_uncertainty_queue_when_asked(ws):
    frames = ws.frames()
    prob = np.full((frames[0].height, frames[0].width), 0.5, np.float32)
    ws.save_prediction(frames[3].id, "m", prob, 0.9)  # the least certain
    ws.save_prediction(frames[1].id, "m", prob, 0.4)
    c = Controller(ws)
    assert c.next_todo().id == frames[0].id  # list order by default
    c.follow_queue = True
    assert c.next_todo().id == frames[3].id
    c.open(frames[3].id)
    assert c.next_todo().id == frames[1].id  # then the next most uncertain, never the open frame
    c.set_filter(person="p1")  # the queue respects the list's filter
    assert c.next_todo().id == frames[1].id and frames[3].person_id == "p2"


def test_undo_and_redo_after_reopening(ws):
    """The history is kept with the frame: a reopened frame undoes step by step, in a new process too."""
    from annotator.history import MAX_STEPS, decode, encode

    frame = ws.frames()[0]
    s = FrameSession.load(ws, frame)
    masks = [s.mask.copy()]
    for k, stroke in enumerate([Stroke(1, 2, ((10, 10), (20, 12))), Stroke(0, 2, ((2, 2),)),
                                Stroke(1, 2, ((30, 20),))]):
        s.add_stroke(stroke)
        mask = masks[-1].copy()
        mask[5 + 5 * k:10 + 5 * k, 5:25] = 1 - mask[5 + 5 * k:10 + 5 * k, 5:25]
        s.apply_result(s.generation, mask)
        masks.append(s.mask.copy())
    s.set_status("done")
    s.undo()  # a redo step is kept too
    assert s.save(ws, "ann")
    again = FrameSession.load(Workspace.open(ws.root), frame.id)
    assert again.undo_count == 3 and again.redo_text == "Mark done" and again.status == "in_progress"
    again.redo()
    assert again.status == "done"
    again.undo()
    for expected in reversed(masks[:-1]):
        change = again.undo()
        assert change is not None and np.array_equal(again.mask, expected) and again.settled
    assert again.undo() is None and again.strokes == []
    # a history that does not lead to the stored state (edited elsewhere) is not restored
    blob = encode(s._undo, s._redo, s.strokes, s.status)
    assert decode(blob, s.strokes, s.status) is not None and decode(blob, s.strokes[:1], s.status) is None
    assert decode(b"garbage", s.strokes, s.status) is None
    assert MAX_STEPS >= 1000


def test_direct_edits_paint_and_polygon_over_the_engine(ws):
    """Paint and polygon strokes set pixels themselves, over the engine's mask, and stay through later strokes,
    undo and reopening; a stroke erased whole goes."""
    from kbh.strokes import compose

    frame = ws.frames()[0]
    image = ws.image(frame)
    s = FrameSession.load(ws, frame)
    s.add_stroke(fg((40, 30), (44, 30)))
    run_engine(s, image)
    paint = Stroke(0, 3, ((42, 30),), kind="paint")  # background paint over the hand
    change = s.add_stroke(paint)
    assert change.text == "Background paint" and s.needs_engine  # recomposed from the stroke list
    run_engine(s, image)
    assert s.mask[30, 42] == 0 and s.source == "manual"
    poly = Stroke(1, 1, ((2, 2), (12, 2), (12, 12), (2, 12)), kind="polygon")
    s.add_stroke(poly)
    run_engine(s, image)
    assert s.mask[5:10, 5:10].all() and s.undo_text == "Foreground polygon"
    s.add_stroke(bg((60, 50)))  # a later scribble: the direct edits stay over the new engine mask
    run_engine(s, image)
    assert s.mask[30, 42] == 0 and s.mask[5:10, 5:10].all()
    expected = compose(fake_engine(image).update(scribbles(s.strokes)), s.strokes)
    assert np.array_equal(s.mask, expected)
    s.save(ws, "ann")
    again = FrameSession.load(Workspace.open(ws.root), frame.id)
    assert again.strokes == s.strokes and again.strokes[2].kind == "polygon" and np.array_equal(again.mask, s.mask)
    assert ws.frame(frame.id).source == "manual"
    again.undo()  # the scribble
    again.undo()  # the polygon
    run_engine(again, image) if again.needs_engine else None
    assert not again.mask[5:10, 5:10].all() and again.strokes[-1] == paint
    again.erase([(2, 2), (12, 12)], 2)  # nothing there now
    assert again.erase([(42, 30)], 5).removed[-1][1] == paint  # the paint goes whole (it is all under the eraser)
    only_paint = FrameSession.load(ws, ws.frames()[1])
    only_paint.add_stroke(Stroke(1, 4, ((20, 20), (30, 20)), kind="paint"))
    assert only_paint.settled and only_paint.mask[20, 25] == 1  # no engine needed: nothing to hint


def test_a_predicted_and_propagated_frame_is_propagated_everywhere(ws):
    """`kbh predict --propagate` stores "<model>@<step>/propagated": the app and the simulator both call it
    propagated (the app once knew only the plain word, and showed such a frame as "model")."""
    from kbh.workspace import is_propagated

    frame = ws.frames()[1]
    prob = np.zeros((frame.height, frame.width), np.float32)
    ws.save_prediction(frame.id, propagated_model("sru0@100"), prob, uncertainty=0.1)
    assert ws.prediction(frame.id).model == "sru0@100/propagated"
    assert FrameSession.load(ws, frame).origin == "propagated" == FrameSession.load(ws, frame).source
    assert is_propagated("propagated") and is_propagated("sru0@100/propagated")
    assert not is_propagated("sru0@100") and not is_propagated("unpropagated")
