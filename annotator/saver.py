"""Autosave off the GUI thread: snapshots of frame sessions are written to the workspace by one thread with its
own database connection (WAL lets the GUI read meanwhile), so PNG encoding and fsync never stall drawing.

Per frame only the newest snapshot waits (times spent add up), so a burst of edits costs one write; the queue
is a few milliseconds deep, which is what "killing the app loses at most the last stroke" rests on.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from PySide6.QtCore import Signal

from kbh.workspace import Workspace

from .frame_queue import FrameQueueThread


class Saver(FrameQueueThread):
    saved = Signal(int, int)  # frame id, number of submitted snapshots this write covers
    failed = Signal(int, int, str)

    def __init__(self, root: str | Path, parent=None):
        super().__init__(parent)
        self.ws = Workspace.open(root)
        self.submitted = 0  # snapshots submitted so far; `saved`/`failed` acknowledge them

    def submit(self, job: dict) -> None:
        """`job`: keyword arguments of `Workspace.save_annotation` plus `frame_id` (see FrameSession.snapshot)."""
        with self._cond:
            self.submitted += 1
        self.put(job["frame_id"], {**job, "_n": 1})

    def merge(self, old: dict, new: dict) -> dict:
        """The newer snapshot wins; the time spent accumulates, and so does the count it acknowledges."""
        merged = {**old, **{k: v for k, v in new.items() if v is not None}}
        merged["add_seconds"] = old.get("add_seconds", 0.0) + new.get("add_seconds", 0.0)
        merged["_n"] = old["_n"] + 1
        return merged

    def stop(self, drain: bool = True, wait_ms: int = 30000) -> None:
        super().stop(drain, wait_ms)
        self.ws.close()

    def process(self, fid: int, job: dict) -> None:
        try:
            kwargs = {k: v for k, v in job.items() if k not in ("frame_id", "_n")}
            self.ws.save_annotation(fid, **kwargs)
            self.saved.emit(fid, job["_n"])
        except Exception as e:  # shown in the window; the session stays as it is in memory
            traceback.print_exc()
            self.failed.emit(fid, job["_n"], f"{type(e).__name__}: {e}")
