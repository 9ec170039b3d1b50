"""One thread, one queue of per-frame jobs where only the newest job of a frame waits: the shape the engine worker
and the saver share. A burst of strokes costs one engine run; a burst of edits, one write.

Subclasses implement `process(frame_id, job)` (in the thread) and may override `merge(old, new)` (how a newer
job replaces a waiting one) and `housekeeping()` (work done under the lock before each job, e.g. dropping
engines). `stop(drain=True)` finishes what waits; `drain=False` drops it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from PySide6.QtCore import QThread

from .qtcompat import immortalize_singletons

immortalize_singletons()  # PySide6 6.12 on Python 3.11 leaks references to None/True/False


class FrameQueueThread(QThread):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: OrderedDict[int, object] = OrderedDict()
        self._busy = False
        self._stopping = False

    # -- what subclasses provide -------------------------------------------------------------------------
    def process(self, frame_id: int, job) -> None:
        raise NotImplementedError

    def merge(self, old, new):
        """The job that waits when `new` arrives while `old` still waits: by default the newer one."""
        return new

    def housekeeping(self) -> bool:
        """Called under the lock before each wait and job; True if it did something (wakes the thread)."""
        return False

    def finished_job(self, busy: bool) -> None:
        """Called after each job, outside the lock; `busy`: more jobs wait."""

    # -- the queue ----------------------------------------------------------------------------------------
    def put(self, frame_id: int, job) -> None:
        with self._cond:
            old = self._pending.pop(frame_id, None)
            self._pending[frame_id] = job if old is None else self.merge(old, job)
            self._cond.notify_all()

    def drop(self, frame_id: int) -> None:
        with self._cond:
            self._pending.pop(frame_id, None)
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def is_idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout_s)

    def stop(self, drain: bool = True, wait_ms: int = 30000) -> None:
        """Stop the thread; with `drain` what waits is processed first."""
        with self._cond:
            if not drain:
                self._pending.clear()
            self._stopping = True
            self._cond.notify_all()
        self.wait(wait_ms)

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    if not self.housekeeping():
                        self._cond.wait()
                self.housekeeping()
                if not self._pending:
                    return  # stopping, nothing left
                fid, job = self._pending.popitem(last=False)
                self._busy = True
            try:
                self.process(fid, job)
            finally:
                with self._cond:
                    self._busy = False
                    busy = bool(self._pending)
                    self._cond.notify_all()
                self.finished_job(busy)
