"""The interactive engine off the GUI thread.

One QThread owns the engines (one per recently used frame, built by the engine factory: a `GrabCutSession`, which
keeps its colour models between strokes, or a trained model's engine; see kbh.engines). Switching the engine
(`set_engine_factory`) drops them all: they belong to the old one. Jobs coalesce (annotator.frame_queue): per frame
only the newest stroke list waits, so a burst of strokes costs one run, and
each result carries the generation it was computed for, so the GUI drops a result made stale by a newer stroke.
"""

from __future__ import annotations

import traceback
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Signal

from .engines import default_engine_factory  # the worker's default (GrabCut)
from .frame_queue import FrameQueueThread


@dataclass
class Job:
    frame_id: int
    generation: int
    strokes: tuple
    image: np.ndarray
    prior: np.ndarray | None


class GrabCutWorker(FrameQueueThread):
    """Runs `engine.update(strokes)` for submitted jobs; emits `resultReady(frame_id, generation, mask)`."""

    resultReady = Signal(int, int, object)
    failed = Signal(int, int, str)
    busyChanged = Signal(bool)
    engineBuilt = Signal(int, str)  # factory epoch, the new engine's `label` ("" if it has none)

    def __init__(self, engine_factory=None, max_engines: int = 4, parent=None):
        super().__init__(parent)
        self.engine_factory = engine_factory or default_engine_factory
        self.max_engines = max_engines
        self._forget: set[int] = set()
        self._epoch = 0  # bumped by every set_engine_factory
        self._drop_engines = False
        self._engines: OrderedDict[int, object] = OrderedDict()  # touched only by the worker thread

    def set_engine_factory(self, factory) -> int:
        """Use `factory` for every job from now on; the engines built so far are dropped (they belong to the old
        factory). A job already running finishes with its engine. Returns the new factory's epoch."""
        with self._cond:
            self.engine_factory = factory or default_engine_factory
            self._epoch += 1
            self._drop_engines = True
            self._cond.notify_all()
            return self._epoch

    @property
    def epoch(self) -> int:
        with self._cond:
            return self._epoch

    def submit(self, frame_id: int, generation: int, strokes, image: np.ndarray, prior: np.ndarray | None) -> None:
        self.put(frame_id, Job(frame_id, generation, tuple(strokes), image, prior))

    def forget(self, frame_id: int) -> None:
        """Drop the frame's engine (its prior changed); the next job builds a new one."""
        with self._cond:
            self._pending.pop(frame_id, None)
            self._forget.add(frame_id)
            self._cond.notify_all()

    def stop(self, wait_ms: int = 10000) -> None:
        super().stop(drain=False, wait_ms=wait_ms)

    def housekeeping(self) -> bool:
        """Under the lock: drop the engines of the old factory and of forgotten frames."""
        did = self._drop_engines or bool(self._forget)
        if self._drop_engines:
            self._engines.clear()
            self._drop_engines = False
        for fid in self._forget:
            self._engines.pop(fid, None)
        self._forget.clear()
        if self._pending:
            self._job_factory = (self.engine_factory, self._epoch)
        return did

    def process(self, frame_id: int, job: Job) -> None:
        factory, epoch = self._job_factory
        self.busyChanged.emit(True)
        try:
            engine = self._engines.pop(job.frame_id, None)
            if engine is None:
                engine = factory(job.image, job.prior)
                self.engineBuilt.emit(epoch, str(getattr(engine, "label", "") or ""))
            self._engines[job.frame_id] = engine
            while len(self._engines) > self.max_engines:
                self._engines.popitem(last=False)
            mask = np.asarray(engine.update(list(job.strokes)), dtype=np.uint8)
            self.resultReady.emit(job.frame_id, job.generation, mask)
        except Exception as e:  # the GUI shows it; the thread carries on with the next job
            self._engines.pop(job.frame_id, None)
            traceback.print_exc()
            self.failed.emit(job.frame_id, job.generation, f"{type(e).__name__}: {e}")

    def finished_job(self, busy: bool) -> None:
        self.busyChanged.emit(busy)
