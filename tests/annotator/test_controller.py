"""The annotator's policies, in `Controller`, driven without a window (issue 10): engine versus save after a change,
the one undo history, autosave and the time flush, acknowledgements, retry after a failed save, propagation."""

import numpy as np
import pytest

from annotator.controller import TIME_FLUSH_S, Controller
from kbh.errors import KbhError
from kbh.strokes import BACKGROUND, FOREGROUND, Stroke
from kbh.workspace import Workspace
from tests.helpers import make_ws


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Rig:
    """A controller with a recording engine and writer, as the window's worker and saver would be."""

    def __init__(self, root):
        self.ws = Workspace.open(root)
        self.jobs, self.written = [], []
        self.clock = Clock()
        self.c = Controller(self.ws, annotator="t", clock=self.clock, writer=self.written.append,
                            engine=lambda *job: self.jobs.append(job))
        self.c.open(self.c.frames[0].id)

    def compute(self):
        """The engine answers the newest job: a mask that is the strokes' bounding box."""
        fid, gen, strokes, image, prior = self.jobs[-1]
        mask = np.zeros(image.shape[:2], np.uint8)
        pts = np.array([p for s in strokes if s.label for p in s.points]).astype(int)
        if len(pts):
            mask[pts[:, 1].min():pts[:, 1].max() + 1, pts[:, 0].min():pts[:, 0].max() + 1] = 1
        return self.c.take_result(fid, gen, mask)


@pytest.fixture
def rig(tmp_path):
    r = Rig(make_ws(tmp_path / "ws", {"p0": {"s0": 3}}, hw=(40, 60), status=None))
    yield r
    r.ws.close()


STROKE = Stroke(FOREGROUND, 2, ((10, 10), (20, 15)))


def test_a_stroke_goes_to_the_engine_then_its_mask_to_the_saver(rig):
    c = rig.c
    c.edit(lambda s: s.add_stroke(STROKE))
    assert len(rig.jobs) == 1 and rig.written == [] and not c.all_saved()
    fid, gen, strokes, image, prior = rig.jobs[0]
    assert fid == c.current.id and strokes == [STROKE] and image.shape == (40, 60, 3) and prior is None
    assert rig.compute()
    assert len(rig.written) == 1 and rig.written[0]["strokes"] == [STROKE]
    assert rig.written[0]["mask"][10:16, 10:21].all() and not c.all_saved()  # written, not yet acknowledged
    c.acknowledge(fid, 1)
    assert c.all_saved()


def test_a_stale_result_is_dropped_and_a_settled_change_goes_straight_to_the_saver(rig):
    c = rig.c
    c.edit(lambda s: s.add_stroke(STROKE))
    stale = rig.jobs[-1]
    c.edit(lambda s: s.add_stroke(Stroke(BACKGROUND, 2, ((1, 1),))))
    assert not c.take_result(stale[0], stale[1], np.ones((40, 60), np.uint8))
    assert rig.compute() and len(rig.written) == 1
    assert c.after_change(c.session) == "save"  # nothing new for the engine
    c.edit(lambda s: s.reset())  # its mask is known: no engine job
    assert len(rig.jobs) == 2 and len(rig.written) == 2 and not rig.written[-1]["mask"].any()


def test_one_history_undo_and_redo_through_the_controller(rig):
    c = rig.c
    c.edit(lambda s: s.add_stroke(STROKE))
    rig.compute()
    first = c.session.mask.copy()
    c.edit(lambda s: s.add_stroke(Stroke(FOREGROUND, 2, ((40, 30), (45, 32)))))
    rig.compute()
    assert c.session.undo_text == "Foreground stroke" and c.session.undo_count == 2
    c.undo()
    assert np.array_equal(c.session.mask, first) and c.session.redo_text == "Foreground stroke"
    assert rig.written[-1]["strokes"] == [STROKE]  # the undone state was saved at once (its mask is known)
    c.redo()
    assert c.session.undo_count == 2 and len(c.session.strokes) == 2
    assert c.undo() is not None and c.undo() is not None and c.undo() is None  # nothing left


def test_autosave_and_the_time_flush(rig):
    c = rig.c
    c.edit(lambda s: s.add_stroke(STROKE))
    rig.clock.t += 4
    c.session.activity()
    assert c.autosave() == 0  # unsettled: nothing to save yet
    rig.compute()
    n = len(rig.written)
    assert c.autosave() == 0  # saved with its result; no time flush yet
    rig.clock.t += TIME_FLUSH_S + 1
    c.session.activity()
    assert c.autosave() == 1 and rig.written[-1]["add_seconds"] > 0 and len(rig.written) == n + 1


def test_a_failed_save_is_retried(rig):
    c = rig.c
    c.edit(lambda s: s.add_stroke(STROKE))
    rig.compute()
    job = rig.written[-1]
    c.acknowledge(job["frame_id"], 1, ok=False)  # disk full, say
    assert c.session.dirty and not c.all_saved()
    assert c.autosave() == 1 and rig.written[-1]["strokes"] == [STROKE]
    c.acknowledge(job["frame_id"], 1)
    assert c.all_saved()


def test_propagate_keeps_the_source_status_and_refuses_human_work(rig):
    c = rig.c
    c.edit(lambda s: s.add_stroke(STROKE))
    rig.compute()
    src = c.current
    nxt = c.propagate()
    assert c.session.status == "in_progress" and c.current.id == src.id
    assert nxt.status == "prelabeled" and c.frames[c.row_of(nxt.id)].status == "prelabeled"  # the list follows
    c.open(nxt.id)
    assert np.array_equal(c.session.mask, rig.written[-1]["mask"])
    c.edit(lambda s: s.add_stroke(Stroke(BACKGROUND, 2, ((2, 2),))))
    c.open(src.id)
    with pytest.raises(KbhError, match="not overwriting a person's work"):
        c.propagate()
