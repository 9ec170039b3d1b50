"""The annotation queue over a workspace, Qt-free: the frame list and its filters, navigation (next/previous
unlabeled), the open frame's session, progress, propagation to the next frame, and saving.

It holds the policies a window must not: after a change, whether the engine or the saver gets it; the one undo
history (each frame's `FrameSession`); autosave and the time-spent flush; counting the saver's acknowledgements
so that "all saved" means written; retrying a failed save. The window wires signals to these methods and paints.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

from kbh.errors import KbhError
from kbh.strokes import scribbles
from kbh.workspace import HUMAN_STATUSES, LABELED_STATUSES, STATUSES, Frame, Workspace, propagated_model

from .session import Change, FrameSession

TODO_STATUSES = ("unlabeled", "prelabeled")  # what "next unlabeled" stops at
REVIEW_STATUSES = ("done",)  # what review mode stops at
LAST_FRAME, ZOOM, BRUSH = "annotator.last_frame", "annotator.zoom", "annotator.brush_fraction"
DEFAULT_BRUSH_FRACTION = 0.012  # of the frame's diagonal: 6 px on 230x306, 18 px on 1280x720
MAX_SESSIONS = 32  # frames whose sessions stay in memory (least recently opened dropped first, saved)
TIME_FLUSH_S = 10.0  # write the time spent on the open frame at least this often


class Controller:
    def __init__(self, ws: Workspace, annotator: str | None = None, clock=time.monotonic, writer=None,
                 engine=None):
        """`writer`: None writes snapshots here and now, else a callable taking one (the GUI's saver thread);
        `engine`: a callable (frame_id, generation, strokes, image, prior) that computes a mask elsewhere and
        hands it to `take_result`, or None (plain tests call `take_result` themselves)."""
        self.ws = ws
        self.writer = writer
        self.engine = engine
        self.annotator = annotator
        self.clock = clock
        self.submitted = 0  # snapshots handed to the writer
        self.acked = 0  # of those, written or failed (`acknowledge`)
        self._last_time_flush = clock()
        self._image: tuple[int, np.ndarray] | None = None  # the open frame's image, read once
        self._last_edited: str | None = None
        self.status_filter: str | None = None
        self.person_filter: str | None = None
        self.frames: list[Frame] = []  # the filtered list, in workspace order
        self.follow_queue = False  # "next" follows kbh.queue: the model's least certain frame first
        self.review_mode = False  # "next" steps through done frames, for accepting or sending back
        self.current: Frame | None = None
        self._sessions: OrderedDict[int, FrameSession] = OrderedDict()
        self.reload()

    # -- the list ----------------------------------------------------------------------------------------------
    def reload(self) -> list[Frame]:
        self.frames = self.ws.frames(status=self.status_filter, person=self.person_filter)
        return self.frames

    def set_filter(self, status: str | None = None, person: str | None = None) -> list[Frame]:
        if status is not None and status not in STATUSES:
            raise KbhError(f"unknown status {status!r}")
        self.status_filter, self.person_filter = status, person
        return self.reload()

    def uncertainties(self) -> dict[int, float]:
        """frame id -> the newest prediction's uncertainty, for the listed frames that have one."""
        listed = {f.id for f in self.frames}
        return {fid: u for fid, u in self.ws.newest_uncertainties().items() if fid in listed}

    def persons(self) -> list[str]:
        return list(self.ws.persons())

    def row_of(self, frame_id: int) -> int | None:
        return next((i for i, f in enumerate(self.frames) if f.id == frame_id), None)

    def refresh_frame(self, frame_id: int) -> Frame:
        """Re-read one frame's record after a save; the filtered list keeps it (filters apply on reload)."""
        fresh = self.ws.frame(frame_id)
        row = self.row_of(frame_id)
        if row is not None:
            self.frames[row] = fresh
        if self.current is not None and self.current.id == frame_id:
            self.current = fresh
        return fresh

    def progress(self) -> dict:
        counts = self.ws.status_counts()
        total = sum(counts.values())
        labeled = sum(counts[s] for s in LABELED_STATUSES)
        return {"total": total, "labeled": labeled, **{s: counts.get(s, 0) for s in STATUSES}}

    # -- navigation --------------------------------------------------------------------------------------------
    def stops_at(self, frame: Frame) -> bool:
        """Whether "next" stops at `frame`: a frame to do, or in review mode a done frame."""
        return self.session_status(frame) in (REVIEW_STATUSES if self.review_mode else TODO_STATUSES)

    def next_todo(self, step: int = 1) -> Frame | None:
        """The next (step=+1) or previous (-1) frame in the list still to annotate, wrapping around.

        With `follow_queue`, "next" is the least certain frame of the uncertainty queue (then unlabeled frames in
        list order) among the listed frames; "previous" still walks the list."""
        if self.follow_queue and step > 0:
            from kbh.queue import annotation_queue

            listed = {f.id: f for f in self.frames}
            for entry in annotation_queue(self.ws):
                f = listed.get(entry.frame_id)
                if f is not None and self.stops_at(f) and (self.current is None or f.id != self.current.id):
                    return f
            return None
        n = len(self.frames)
        if n == 0:
            return None
        start = self.row_of(self.current.id) if self.current is not None else None
        if start is None:
            start = -1 if step > 0 else n
        for k in range(1, n + 1):
            f = self.frames[(start + step * k) % n]
            if self.stops_at(f) and (self.current is None or f.id != self.current.id):
                return f
        return None

    def neighbour(self, step: int) -> Frame | None:
        row = self.row_of(self.current.id) if self.current is not None else None
        if row is None:
            return self.frames[0] if self.frames else None
        j = row + step
        return self.frames[j] if 0 <= j < len(self.frames) else None

    def session_status(self, frame: Frame) -> str:
        s = self._sessions.get(frame.id)
        return s.status if s is not None else frame.status

    # -- sessions ----------------------------------------------------------------------------------------------
    def open(self, frame_id: int) -> FrameSession:
        """Make `frame_id` the current frame; the frame left is saved and its clock paused."""
        if self.current is not None and self.current.id != frame_id:
            self.leave()
        self.current = self.ws.frame(frame_id)
        if self._image is not None and self._image[0] != frame_id:
            self._image = None
        session = self._sessions.pop(frame_id, None)
        if session is None:
            session = FrameSession.load(self.ws, self.current, clock=self.clock)
        self._sessions[frame_id] = session
        while len(self._sessions) > MAX_SESSIONS:
            old_id, old = next(iter(self._sessions.items()))
            if old_id == frame_id or (old.dirty and not old.settled):
                break  # never drop work still waiting for its mask; it goes once its engine result is in
            self.save(old, force_time=True)
            self._sessions.popitem(last=False)
        session.activity()
        return session

    @property
    def session(self) -> FrameSession | None:
        return self._sessions.get(self.current.id) if self.current is not None else None

    def cached_session(self, frame_id: int) -> FrameSession | None:
        return self._sessions.get(frame_id)

    def forget(self, frame_id: int) -> None:
        self._sessions.pop(frame_id, None)

    def leave(self) -> None:
        s = self.session
        if s is not None:
            s.activity()
            self.save(s, force_time=True)
            s.pause()

    def save(self, session: FrameSession | None = None, force_time: bool = False) -> bool:
        session = session or self.session
        if session is None:
            return False
        job = session.snapshot(self.annotator, force_time=force_time)
        if job is None:
            return False
        if self.writer is not None:
            self.submitted += 1
            self.writer(job)
            return True
        fid = job.pop("frame_id")
        self.ws.save_annotation(fid, **job)
        self.refresh_frame(fid)
        return True

    def acknowledge(self, frame_id: int, n: int, ok: bool = True) -> None:
        """The writer wrote (or failed to write) `n` snapshots of `frame_id`. A failed one is retried: its
        session is unsaved again, and the next `autosave` hands it over once more."""
        self.acked += n
        if ok:
            self.refresh_frame(frame_id)
            return
        s = self._sessions.get(frame_id)
        if s is not None:
            s.dirty = True

    def all_saved(self) -> bool:
        """Every edit is in the workspace: no session unsettled or unsaved, every snapshot acknowledged."""
        return (all(s.settled and not s.dirty for s in self._sessions.values())
                and self.acked == self.submitted)

    def autosave(self, now: float | None = None) -> int:
        """Hand every settled, unsaved session to the writer; with them, the open frame's time spent at least
        every TIME_FLUSH_S. Returns how many snapshots went."""
        now = self.clock() if now is None else now
        flush_time = now - self._last_time_flush >= TIME_FLUSH_S
        if flush_time:
            self._last_time_flush = now
        current = self.session
        return sum(self.save(s, force_time=flush_time and s is current) for s in list(self._sessions.values())
                   if s.dirty or (flush_time and s is current))

    def flush(self) -> int:
        """Save everything now (leaving a frame, closing, Ctrl+S), the open frame's time included."""
        current = self.session
        return sum(self.save(s, force_time=s is current) for s in list(self._sessions.values()))

    def image(self, frame_id: int) -> np.ndarray:
        if self._image is not None and self._image[0] == frame_id:
            return self._image[1]
        image = self.ws.image(frame_id)
        if self.current is not None and frame_id == self.current.id:
            self._image = (frame_id, image)
        return image

    # -- edits and the one history -------------------------------------------------------------------------
    def edit(self, make_change) -> Change | None:
        """Apply `make_change(session)` (e.g. `lambda s: s.add_stroke(stroke)`) to the open frame, then send the
        new state to the engine or the saver. Returns the change, or None when nothing changed."""
        s = self.session
        if s is None:
            return None
        change = make_change(s)
        if change is not None:
            self.after_change(s)
            if self._last_edited != self.current.key:  # where to reopen: the last frame edited
                self._last_edited = self.current.key
                self.remember(LAST_FRAME, self.current.key)
        return change

    # -- the person's place, kept with the workspace -------------------------------------------------------
    def remember(self, key: str, value) -> None:
        if not self.ws.readonly:
            self.ws.set_setting(key, value)

    def resume_frame(self) -> Frame | None:
        """Where to start: the last frame edited in this workspace, else the first frame to do, else the first."""
        key = self.ws.setting(LAST_FRAME)
        last = self.ws.frame_by_key(key) if key else None
        if last is not None and self.row_of(last.id) is not None:
            return last
        return self.next_todo() or (self.frames[0] if self.frames else None)

    def brush_radius(self, frame: Frame) -> float:
        """The brush radius in `frame`'s pixels: a fraction of its diagonal, the same on every frame size."""
        fraction = float(self.ws.setting(BRUSH, DEFAULT_BRUSH_FRACTION))
        return fraction * float(np.hypot(frame.width, frame.height))

    def set_brush_radius(self, radius: float, frame: Frame) -> None:
        self.remember(BRUSH, radius / float(np.hypot(frame.width, frame.height)))

    # -- review ------------------------------------------------------------------------------------------------
    def accept(self) -> Change | None:
        return self.edit(lambda s: s.accept())

    def send_back(self, note: str) -> Change | None:
        return self.edit(lambda s: s.send_back(note))

    def undo(self):
        return self.edit(lambda s: s.undo())

    def redo(self):
        return self.edit(lambda s: s.redo())

    def after_change(self, session: FrameSession) -> str:
        """A change moved `session`: its strokes need the engine's mask ("engine"), or it is settled and goes to
        the saver ("save")."""
        session.activity()
        if session.needs_engine:
            self.submit(session)
            return "engine"
        self.save(session)
        return "save"

    def submit(self, session: FrameSession) -> None:
        if self.engine is not None:  # the engine sees the hints; the session draws the direct edits over its mask
            self.engine(session.frame_id, session.generation, scribbles(session.strokes),
                        self.image(session.frame_id), session.prior)

    def take_result(self, frame_id: int, generation: int, mask: np.ndarray) -> bool:
        """The engine's mask for `generation` of a frame: applied and saved; False if stale or forgotten."""
        session = self._sessions.get(frame_id)
        if session is None or not session.apply_result(generation, mask):
            return False
        self.save(session)
        return True

    # -- propagation -------------------------------------------------------------------------------------------
    def next_in_sequence(self, frame: Frame | None = None) -> Frame | None:
        frame = frame or self.current
        if frame is None:
            return None
        seq = self.ws.frames(sequence=frame.sequence_id)
        later = [f for f in seq if f.frame_index > frame.frame_index]
        return later[0] if later else None

    def propagate(self) -> Frame:
        """Start the next frame of the sequence from the current frame's mask (stored as its prior under the
        model name "propagated"; the frame becomes prelabeled). Refuses to touch a frame a person worked on.
        The current frame's status does not change: marking it done is the person's call (D)."""
        s = self.session
        if s is None:
            raise KbhError("no frame open")
        if not s.settled:
            raise KbhError("the mask is still being computed; try again in a moment")
        nxt = self.next_in_sequence()
        if nxt is None:
            raise KbhError(f"{self.current.key} is the last frame of sequence {self.current.sequence_id}")
        cached = self._sessions.get(nxt.id)
        status = cached.status if cached is not None else nxt.status
        if status in HUMAN_STATUSES or (cached is not None and cached.strokes):
            raise KbhError(f"{nxt.key} is already {status.replace('_', ' ')}; not overwriting a person's work")
        self.ws.save_prediction(nxt.id, propagated_model(), s.mask.astype(np.float32), uncertainty=0.0)
        self.forget(nxt.id)  # its starting mask changed: load it afresh
        return self.refresh_frame(nxt.id)
