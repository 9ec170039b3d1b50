"""Start the annotator on a workspace."""

from __future__ import annotations

import sys
from pathlib import Path

from kbh.errors import KbhError
from kbh.workspace import Workspace

from .engines import DEFAULT_ENGINE, build_engine


def run(workspace_path: str | Path, annotator: str | None = None, frame_key: str | None = None,
        engine: str = DEFAULT_ENGINE, checkpoint: str | Path | None = None) -> int:
    """Open the workspace in the annotation window and run the Qt event loop; returns the exit code.
    Bad input (not a workspace, unknown frame, unknown engine, missing or bad checkpoint) raises KbhError before
    any window opens."""
    ws = Workspace.open(workspace_path)
    try:
        frame = None
        if frame_key is not None:
            frame = ws.frame_by_key(frame_key)
            if frame is None:
                raise KbhError(f"{workspace_path}: no frame with key {frame_key!r}")
        choice = build_engine(engine, checkpoint)
        from PySide6.QtWidgets import QApplication

        from .window import APPLICATION, ORGANIZATION, AnnotatorWindow

        app = QApplication.instance() or QApplication(sys.argv[:1])
        app.setOrganizationName(ORGANIZATION)
        app.setApplicationName(APPLICATION)
        window = AnnotatorWindow(ws, annotator=annotator, engine=choice)
        if frame is not None:
            window.open_frame(frame.id)
        window.show()
        return app.exec()
    finally:
        ws.close()
