"""Fixtures of the annotator's tests: a workspace on disk and shown windows over it (offscreen)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from annotator.window import AnnotatorWindow
from kbh.workspace import Workspace
from tests.annotator.helpers import fake_engine, make_workspace


@pytest.fixture
def ws_path(tmp_path):
    make_workspace(tmp_path / "ws").close()
    return tmp_path / "ws"


@pytest.fixture
def open_window(qtbot, tmp_path):
    """Factory: a shown window on a workspace path, with its own settings file (never the user's)."""
    made = []

    def make(path, register=True, **kw):
        """`engine` or `engine_factory` as the window takes them; by default the stand-in engine."""
        if "engine" not in kw:
            kw.setdefault("engine_factory", fake_engine)
        settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
        win = AnnotatorWindow(Workspace.open(path), settings=settings, annotator="tester", **kw)
        if register:
            qtbot.addWidget(win)
        win.resize(900, 600)
        win.show()
        qtbot.waitExposed(win)
        made.append(win)
        return win

    yield make
    for win in made:
        win.worker.stop()
        win.saver.stop(drain=False)
