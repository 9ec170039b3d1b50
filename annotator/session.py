"""One frame's annotation, Qt-free: the stroke list, the mask, the status, the undo history and the time spent.

The undo history holds compact differences, napari style: adding a stroke stores the stroke, erasing stores the
removed strokes with their positions, and every change that moves the mask stores the changed pixel indices with
their old and new values (`MaskDiff`), never a copy of the mask.

The mask of a stroke change comes from the interactive engine (GrabCut by default, or a trained model; see
kbh.engines), which runs elsewhere (a worker thread). A change is "unsettled" until the engine's result for it
arrives; `generation` counts the changes that ask the engine (stroke-list changes, and a re-run of the same strokes
after the engine was switched), so a result computed for an older request is recognised and dropped. An unsettled change moves no pixels; when its result arrives
late (after an undo, say) the next change waiting to be redone is re-based on the new mask, so the chain of
differences always leads from the starting mask to the current one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from kbh.strokes import Stroke, compose, draw_stroke, scribbles, split_by_eraser
from kbh.workspace import HUMAN_STATUSES, PROPAGATED, Frame, Workspace, is_propagated

IDLE_CAP_S = 30.0  # a pause longer than this counts as this long: the person was away, not annotating


@dataclass(frozen=True)
class MaskDiff:
    """The pixels that changed between two masks: flat indices with their old and new values."""

    index: np.ndarray  # int64, flat indices into the (H, W) mask
    old: np.ndarray  # uint8
    new: np.ndarray  # uint8

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray) -> "MaskDiff":
        idx = np.flatnonzero(before.ravel() != after.ravel())
        return cls(idx, before.ravel()[idx].copy(), after.ravel()[idx].copy())

    def apply(self, mask: np.ndarray) -> None:
        mask.reshape(-1)[self.index] = self.new

    def revert(self, mask: np.ndarray) -> None:
        mask.reshape(-1)[self.index] = self.old

    def __len__(self) -> int:
        return int(self.index.size)

    @property
    def nbytes(self) -> int:
        return int(self.index.nbytes + self.old.nbytes + self.new.nbytes)


@dataclass
class Change:
    """One undo step. Stroke indices refer to the list before (`removed`) or after (`added`) the change."""

    text: str
    removed: tuple[tuple[int, Stroke], ...] = ()
    added: tuple[tuple[int, Stroke], ...] = ()
    status: tuple[str, str] | None = None  # (before, after)
    mask: MaskDiff | None = None
    settled: bool = True  # False while its mask is still to come from the engine
    rerun: bool = False  # the same strokes, run again by another engine (the engine was switched)

    @property
    def touches_strokes(self) -> bool:
        return bool(self.removed or self.added)

    @property
    def asks_engine(self) -> bool:
        """Its mask comes from the engine: it changes the strokes or re-runs them."""
        return self.touches_strokes or self.rerun

    @property
    def owns_mask(self) -> bool:
        """It sets the mask: by the engine, or by a stored difference (a reset)."""
        return self.asks_engine or self.mask is not None


@dataclass
class FrameSession:
    """Annotation state of one frame. Create with `FrameSession.load(ws, frame)` or directly (tests)."""

    frame_id: int
    mask: np.ndarray  # uint8 (H, W) {0, 1}, the current mask
    strokes: list[Stroke] = field(default_factory=list)
    status: str = "unlabeled"
    origin: str | None = None  # where the starting mask came from: model, propagated, import; None = scratch
    prior: np.ndarray | None = None  # what the engine starts from: probability map or mask, or None
    initial_mask: np.ndarray | None = None  # what "reset" returns to
    idle_cap: float = IDLE_CAP_S
    clock: object = time.monotonic
    generation: int = 0  # bumped by every change that asks the engine (stroke-list changes, re-runs)
    dirty: bool = False  # something not yet written to the workspace
    mask_version: int = 0  # bumped whenever the mask's pixels change (views redraw only then)
    base_settled: bool = True  # the state before any change has its mask (False: strokes loaded without mask)
    note: str | None = None  # why a reviewer sent the frame back; shown to whoever opens it next
    note_dirty: bool = False  # the note changed and is not yet written

    def __post_init__(self):
        self.mask = np.array(self.mask, dtype=np.uint8, order="C")  # own copy: edited in place
        if self.initial_mask is None:
            self.initial_mask = np.zeros_like(self.mask)
        else:
            self.initial_mask = np.array(self.initial_mask, dtype=np.uint8)
        self._undo: list[Change] = []
        self._redo: list[Change] = []
        self._last_activity: float | None = None
        self._pending_seconds = 0.0

    # -- loading -----------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, ws: Workspace, frame: Frame | int, **kw) -> "FrameSession":
        """The frame as the workspace holds it: saved mask and strokes restored exactly; a model's (or a
        propagated) prediction becomes the engine's prior and, for a frame without a mask, the starting mask."""
        frame = frame if isinstance(frame, Frame) else ws.frame(frame)
        shape = (frame.height, frame.width)
        saved = ws.mask(frame)
        strokes = ws.strokes(frame.id)
        pred = ws.prediction(frame.id)
        prob = ws.prediction_probability(pred) if pred is not None else None
        origin = frame.source if frame.source in ("model", "propagated", "import") else None
        if pred is not None and origin is None:
            origin = PROPAGATED if is_propagated(pred.model) else "model"
        initial = (prob >= 0.5).astype(np.uint8) if prob is not None else None
        if initial is None and origin == "import" and saved is not None and not strokes:
            initial = saved
        # A person's work wins; an untouched frame starts from its newest prediction (model or propagated).
        use_saved = saved is not None and (bool(strokes) or frame.status in HUMAN_STATUSES or pred is None)
        if use_saved:
            mask = saved
        else:
            mask = initial if initial is not None else np.zeros(shape, np.uint8)
        # The engine starts from a pre-annotation (a prediction, an imported mask), never from the person's own
        # earlier result: then a frame's mask stays a function of its strokes across sessions.
        prior = prob if prob is not None else (saved if origin == "import" else None)
        session = cls(frame.id, mask, list(strokes), frame.status, origin, prior, initial,
                      base_settled=use_saved or not strokes, note=ws.note(frame.id), **kw)
        blob = ws.history(frame.id) if use_saved or not strokes else None
        if blob:
            from .history import decode

            stacks = decode(blob, session.strokes, session.status)
            if stacks is not None:  # the history leads to exactly this state: undo goes on where it stopped
                session._undo, session._redo = stacks
        return session

    # -- queries -----------------------------------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        """The current mask belongs to the current stroke list."""
        for change in reversed(self._undo):
            if change.owns_mask:
                return change.settled
        return self.base_settled

    @property
    def needs_engine(self) -> bool:
        return not self.settled and bool(scribbles(self.strokes))

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str | None:
        """What undo would take back ("Foreground stroke", ...), or None."""
        return self._undo[-1].text if self._undo else None

    @property
    def redo_text(self) -> str | None:
        return self._redo[-1].text if self._redo else None

    @property
    def undo_count(self) -> int:
        return len(self._undo)

    @property
    def source(self) -> str:
        """Where the mask comes from: "manual" once a direct edit (paint, polygon) is in it, else the starting
        mask's origin (model, propagated, import), else "grabcut"."""
        if any(s.direct for s in self.strokes):
            return "manual"
        return self.origin or "grabcut"

    def history_nbytes(self) -> int:
        return sum(c.mask.nbytes for c in self._undo + self._redo if c.mask is not None)

    # -- edits (each returns the Change it made, already applied, or None when nothing changed) ----------------
    def add_stroke(self, stroke: Stroke) -> Change:
        """A scribble (the engine decides the mask) or a direct edit (paint, polygon: it sets pixels itself, over
        the engine's mask). Either way the mask is recomputed from the stroke list (kbh.strokes.compose)."""
        what = {"scribble": "stroke", "paint": "paint", "polygon": "polygon"}[stroke.kind]
        change = Change(f"{'Foreground' if stroke.label else 'Background'} {what}",
                        added=((len(self.strokes), stroke),), settled=False)
        if self.status in ("unlabeled", "prelabeled"):
            change.status = (self.status, "in_progress")  # the first stroke starts the work
        return self._do(change)

    def erase(self, points, radius: float) -> Change | None:
        """Erase under the eraser path (points in image pixels): the parts of strokes it crosses go, the rest of
        each stroke stays (a polygon it touches goes whole)."""
        if not self.strokes or not len(points):
            return None
        eraser = np.zeros(self.mask.shape, np.uint8)
        draw_stroke(eraser, Stroke(0, radius, tuple(points)), 1)
        eraser = eraser.astype(bool)
        removed, after = [], []
        for i, s in enumerate(self.strokes):
            pieces = split_by_eraser(s, eraser)
            if pieces is None:
                after.append((s, False))
            else:
                removed.append((i, s))
                after += [(p, True) for p in pieces]
        if not removed:
            return None
        added = tuple((j, s) for j, (s, new) in enumerate(after) if new)
        return self._do(Change(f"Erase from {len(removed)} stroke" + ("s" if len(removed) > 1 else ""),
                               removed=tuple(removed), added=added, settled=False))

    def reset(self) -> Change | None:
        """Drop every stroke and go back to the starting mask (the pre-annotation, or empty). A finished frame
        goes back to "in progress": a reset frame is not done (one undo step brings both back)."""
        diff = MaskDiff.between(self.mask, self.initial_mask)
        if not self.strokes and not len(diff):
            return None
        change = Change("Reset frame", removed=tuple(enumerate(self.strokes)), mask=diff)
        if self.status in ("done", "reviewed"):
            change.status = (self.status, "in_progress")
        return self._do(change)

    def send_back(self, note: str) -> Change | None:
        """Review: the frame goes back to "in progress", with a note for the next person who opens it."""
        self.note, self.note_dirty = (note.strip() or None), True
        change = self.set_status("in_progress")
        self.dirty = True
        return change or Change("Send back")

    def accept(self) -> Change | None:
        """Review: the frame is reviewed; a note from an earlier send-back is cleared."""
        if self.note:
            self.note, self.note_dirty, self.dirty = None, True, True
        return self.set_status("reviewed")

    def rerun(self, text: str = "Re-run strokes") -> Change | None:
        """Ask the engine again for the same strokes (another engine was chosen); the new mask becomes an undo
        step of its own, so undo shows the previous engine's mask again. None when there are no strokes."""
        if not self.strokes:
            return None
        return self._do(Change(text, settled=False, rerun=True))

    def set_status(self, status: str) -> Change | None:
        if status == self.status:
            return None
        return self._do(Change(f"Mark {status.replace('_', ' ')}", status=(self.status, status)))

    def _do(self, change: Change) -> Change:
        self._apply(change, forward=True)
        if change.touches_strokes and not scribbles(self.strokes) and not change.settled:
            # No hint left for the engine: the mask is the starting mask with the direct edits, known now.
            change.mask = MaskDiff.between(self.mask, compose(self.initial_mask, self.strokes))
            change.mask.apply(self.mask)
            change.settled = True
            self.mask_version += 1
        self._undo.append(change)
        self._redo.clear()
        return change

    # -- undo / redo -------------------------------------------------------------------------------------------
    def undo(self) -> Change | None:
        if not self._undo:
            return None
        change = self._undo.pop()
        self._apply(change, forward=False)
        self._redo.append(change)
        return change

    def redo(self) -> Change | None:
        if not self._redo:
            return None
        change = self._redo.pop()
        self._apply(change, forward=True)
        self._undo.append(change)
        return change

    def _apply(self, change: Change, forward: bool) -> None:
        take, put = (change.removed, change.added) if forward else (change.added, change.removed)
        for i, _ in sorted(take, key=lambda t: t[0], reverse=True):
            del self.strokes[i]
        for i, s in sorted(put, key=lambda t: t[0]):
            self.strokes.insert(i, s)
        if change.status is not None:
            self.status = change.status[1] if forward else change.status[0]
        if change.mask is not None:
            (change.mask.apply if forward else change.mask.revert)(self.mask)
            self.mask_version += 1
        if change.asks_engine:
            self.generation += 1
        self.dirty = True

    # -- engine results ----------------------------------------------------------------------------------------
    def apply_result(self, generation: int, mask: np.ndarray) -> bool:
        """Take the engine's mask for stroke-list `generation`; False (and nothing changes) if it is stale."""
        if generation != self.generation:
            return False
        mask = np.asarray(mask, dtype=np.uint8)
        if mask.shape != self.mask.shape:
            raise ValueError(f"engine mask {mask.shape} for a frame of {self.mask.shape}")
        mask = compose(mask, self.strokes)  # the direct edits over the engine's mask
        owner = next((c for c in reversed(self._undo) if c.owns_mask), None)
        if owner is None:  # strokes loaded without a mask: the base state gets its mask
            if self.base_settled:
                return False
            self._rebase_next(self.mask, mask)
            self.mask[...] = mask
            self.base_settled = True
        else:
            if owner.settled:
                return False  # already has its mask (e.g. a reset); the engine was not asked for this one
            diff = MaskDiff.between(self.mask, mask)
            self._rebase_next(self.mask, mask)
            owner.mask, owner.settled = diff, True
            diff.apply(self.mask)
        self.mask_version += 1
        self.dirty = True
        return True

    def _rebase_next(self, old_state: np.ndarray, new_state: np.ndarray) -> None:
        """The next change to redo was a difference from `old_state`; make it one from `new_state`."""
        nxt = next((c for c in reversed(self._redo) if c.mask is not None), None)
        if nxt is None:
            return
        target = old_state.copy()
        nxt.mask.apply(target)
        nxt.mask = MaskDiff.between(new_state, target)

    # -- time spent --------------------------------------------------------------------------------------------
    def activity(self, now: float | None = None) -> None:
        """The person did something on this frame; the gap since the last activity counts, capped."""
        now = self.clock() if now is None else now
        if self._last_activity is not None:
            self._pending_seconds += min(max(0.0, now - self._last_activity), self.idle_cap)
        self._last_activity = now

    def pause(self) -> None:
        """The person left the frame: the time until the next activity does not count."""
        self._last_activity = None

    @property
    def pending_seconds(self) -> float:
        return self._pending_seconds

    # -- saving ------------------------------------------------------------------------------------------------
    def snapshot(self, annotator: str | None = None, force_time: bool = False) -> dict | None:
        """What to write now, as keyword arguments of `Workspace.save_annotation` (plus frame_id), or None.

        Only a settled state is written, so the stored mask always belongs to the stored strokes; the undo
        history goes with it (annotator.history), so undo works after reopening. Taking a
        snapshot marks the session clean and hands over the time spent so far; the mask is copied, so the
        snapshot can be written on another thread while the person goes on."""
        if self.dirty and self.settled:
            from .history import encode

            seconds, self._pending_seconds = self._pending_seconds, 0.0
            self.dirty = False
            note = (self.note or "") if self.note_dirty else None
            self.note_dirty = False
            return dict(frame_id=self.frame_id, mask=self.mask.copy(), strokes=list(self.strokes),
                        status=self.status, source=self.source, annotator=annotator, add_seconds=seconds,
                        history=encode(self._undo, self._redo, self.strokes, self.status), note=note)
        if force_time and self._pending_seconds > 0:
            seconds, self._pending_seconds = self._pending_seconds, 0.0
            return dict(frame_id=self.frame_id, add_seconds=seconds)
        return None

    def save(self, ws: Workspace, annotator: str | None = None, force_time: bool = False) -> bool:
        """Write what changed (mask, strokes, status, source, time) in one workspace call; True if it wrote."""
        job = self.snapshot(annotator, force_time)
        if job is None:
            return False
        ws.save_annotation(job.pop("frame_id"), **job)
        return True
