"""Autosave off the GUI thread: snapshots of frame sessions are written to the workspace by one thread with its
own database connection (WAL lets the GUI read meanwhile), so PNG encoding and fsync never stall drawing.

Per frame only the newest snapshot waits (times spent add up), so a burst of edits costs one write; the queue
is a few milliseconds deep, which is what "killing the app loses at most the last stroke" rests on.
"""

from __future__ import annotations

import threading
import traceback
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from kbh.workspace import Workspace

from .qtcompat import immortalize_singletons

immortalize_singletons()  # PySide6 6.12 on Python 3.11 leaks references to None/True/False


class Saver(QThread):
    saved = Signal(int, int)  # frame id, number of submitted snapshots this write covers
    failed = Signal(int, int, str)

    def __init__(self, root: str | Path, parent=None):
        super().__init__(parent)
        self.ws = Workspace.open(root)
        self._cond = threading.Condition()
        self._pending: OrderedDict[int, dict] = OrderedDict()
        self._busy = False
        self._stopping = False
        self.submitted = 0  # snapshots submitted so far; `saved`/`failed` acknowledge them

    def submit(self, job: dict) -> None:
        """`job`: keyword arguments of `Workspace.save_annotation` plus `frame_id` (see FrameSession.snapshot)."""
        job = {**job, "_n": 1}
        with self._cond:
            self.submitted += 1
            old = self._pending.pop(job["frame_id"], None)
            if old is not None:  # the newer snapshot wins; only the time spent accumulates
                merged = {**old, **{k: v for k, v in job.items() if v is not None}}
                merged["add_seconds"] = old.get("add_seconds", 0.0) + job.get("add_seconds", 0.0)
                merged["_n"] = old["_n"] + 1
                job = merged
            self._pending[job["frame_id"]] = job
            self._cond.notify_all()

    def is_idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout_s)

    def stop(self, drain: bool = True, wait_ms: int = 30000) -> None:
        """Stop the thread; with `drain` everything queued is written first."""
        with self._cond:
            if not drain:
                self._pending.clear()
            self._stopping = True
            self._cond.notify_all()
        self.wait(wait_ms)
        self.ws.close()

    def run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                if not self._pending:
                    return  # stopping, nothing left
                fid, job = self._pending.popitem(last=False)
                self._busy = True
            try:
                kwargs = {k: v for k, v in job.items() if k not in ("frame_id", "_n")}
                self.ws.save_annotation(fid, **kwargs)
                self.saved.emit(fid, job["_n"])
            except Exception as e:  # shown in the window; the session stays as it is in memory
                traceback.print_exc()
                self.failed.emit(fid, job["_n"], f"{type(e).__name__}: {e}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
