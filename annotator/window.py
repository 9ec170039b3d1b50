"""The main window: frame list with filters and progress, the canvas, tools, menus with shortcuts, help.

Thin over `Controller` (queue, the one undo history, engine-versus-save, autosave, acknowledgements, retries) and
`FrameSession` (one frame's state and undo history): every edit goes controller -> session -> engine job or
saver, and the window repaints what changed.
The Engine menu switches the interactive engine (GrabCut, or a trained model from a checkpoint) through
`annotator.engines` (never `training` directly); the worker drops the old engines and the open frame's strokes
are run again by the new one, as an undo step of their own.
"""

from __future__ import annotations


from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QComboBox, QDialog, QDialogButtonBox,
                               QDockWidget, QDoubleSpinBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QMainWindow, QMessageBox, QProgressBar, QSlider, QTableWidget, QTableWidgetItem,
                               QToolBar, QVBoxLayout, QWidget)

from kbh.errors import KbhError
from kbh.workspace import STATUSES, Workspace

from .canvas import Canvas
from .controller import ZOOM, Controller
from .engines import EngineChoice, build_engine, choice_from_factory, one_line
from .saver import Saver
from .session import FrameSession
from .worker import GrabCutWorker
from .qtcompat import immortalize_singletons

immortalize_singletons()  # PySide6 6.12 on Python 3.11 leaks references to None/True/False

ORGANIZATION, APPLICATION = "kbh", "annotator"
AUTOSAVE_MS = 500  # safety net; edits are saved as soon as their mask is in
COLUMNS = ("Frame", "Status", "Person", "Sequence", "Strokes", "Time", "Uncertainty")
STATUS_COLOURS = {"unlabeled": "#ffffff", "prelabeled": "#dbe9ff", "in_progress": "#fff3c4", "done": "#d7f5d0",
                  "reviewed": "#9fe3a0"}
MAX_RECENT = 8
EMPTY_HINT = ("<h3>This workspace has no frames yet</h3>"
              "<p>Import some from a terminal, then open the workspace again (File &gt; Open workspace…):</p>"
              "<pre>kbh import WS FOLDER_OF_IMAGES [--masks FOLDER_OF_MASKS]\n"
              "kbh import WS video.mp4 --every 5 --person 07</pre>"
              "<p>Then draw short strokes: the <b>left button</b> marks hand, the <b>right button</b> marks "
              "background; the mask follows each stroke. <b>F1</b> lists every shortcut.</p>")


class AnnotatorWindow(QMainWindow):
    def __init__(self, ws: Workspace, settings: QSettings | None = None, engine_factory=None,
                 annotator: str | None = None, parent=None, engine: EngineChoice | None = None):
        """`engine`: the engine to start with (`annotator.engines.build_engine`); without it, `engine_factory`
        (a bare per-frame factory, e.g. a test's stand-in) or else the built-in GrabCut."""
        super().__init__(parent)
        self.setWindowTitle(f"kbh annotate — {ws.root}")
        self.ws = ws
        self.settings = settings if settings is not None else QSettings(ORGANIZATION, APPLICATION)
        self.saver = Saver(ws.root)
        self.saver.saved.connect(self._on_saved)
        self.saver.failed.connect(self._on_save_failed)
        self.saver.start()
        self.engine: EngineChoice = engine if engine is not None else choice_from_factory(engine_factory)
        self.engine_error: str | None = None  # the last engine switch that failed, as shown
        self.engine_error_box: QMessageBox | None = None
        self.worker = GrabCutWorker(self.engine.factory)
        self._engine_epoch = self.worker.epoch
        self.worker.resultReady.connect(self.on_result)
        self.worker.failed.connect(self.on_failed)
        self.worker.busyChanged.connect(self._on_busy)
        self.worker.engineBuilt.connect(self._on_engine_built)
        self.worker.start()
        self.controller = Controller(ws, annotator=annotator, writer=self.saver.submit, engine=self.worker.submit)
        self._shown_mask = None  # (frame id, session id, mask version) on the canvas
        self._closed = False
        self.owns_workspace = False  # True when opened from File > Open: closed with the window
        self._rows: dict[int, list[QTableWidgetItem]] = {}  # frame id -> its row's items (sorting moves rows)

        self.canvas = Canvas(self)
        self.hint = QLabel(EMPTY_HINT)
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note_banner = QLabel()
        self.note_banner.setWordWrap(True)
        self.note_banner.setStyleSheet("background: #fff0a8; color: #000; padding: 6px; font-weight: bold;")
        self.note_banner.hide()
        central = QWidget()
        box = QVBoxLayout(central)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        for w in (self.hint, self.note_banner, self.canvas):
            box.addWidget(w)
        self.setCentralWidget(central)
        self.canvas.strokeFinished.connect(self.on_stroke)
        self.canvas.eraseFinished.connect(self.on_erase)
        self.canvas.activity.connect(self._on_activity)
        self._build_list_dock()
        self._build_actions()
        self._build_toolbar()
        self._build_statusbar()
        self._restore_settings()
        self.populate_list()

        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.controller.autosave)
        self.autosave_timer.start()
        empty = self.ws.count_frames() == 0
        self.hint.setVisible(empty)
        self.canvas.setVisible(not empty)
        first = self.controller.resume_frame()  # where the person stopped: the last frame edited
        if first is not None:
            self.open_frame(first.id)
            zoom = self.ws.setting(ZOOM)
            if zoom not in (None, "fit"):
                self.canvas.zoom_by(float(zoom) / self.canvas.zoom())

    # -- layout ------------------------------------------------------------------------------------------------
    def _build_list_dock(self):
        panel = QWidget()
        layout = QVBoxLayout(panel)
        filters = QHBoxLayout()
        self.status_filter = QComboBox()
        self.status_filter.addItem("all statuses", None)
        for s in STATUSES:
            self.status_filter.addItem(s.replace("_", " "), s)
        self.person_filter = QComboBox()
        self.person_filter.addItem("all persons", None)
        for p in self.controller.persons():
            self.person_filter.addItem(p, p)
        for combo in (self.status_filter, self.person_filter):
            combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # single-key shortcuts keep working
            combo.currentIndexChanged.connect(self.apply_filters)
        filters.addWidget(self.status_filter)
        filters.addWidget(self.person_filter)
        layout.addLayout(filters)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        # Click a header to sort by it; until then the rows keep the workspace's order (person, sequence, index).
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.horizontalHeader().setSortIndicatorShown(True)
        layout.addWidget(self.table)
        self.list_dock = QDockWidget("Frames", self)
        self.list_dock.setObjectName("frames_dock")
        self.list_dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.list_dock)
        self.resizeDocks([self.list_dock], [440], Qt.Orientation.Horizontal)

    def _action(self, menu, text, shortcut, slot, checkable=False, tip=None):
        act = QAction(text, self)
        if shortcut:
            keys = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
            act.setShortcuts([QKeySequence(k) for k in keys])
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.setCheckable(checkable)
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(slot)
        menu.addAction(act)
        self.addAction(act)
        self.shortcut_actions.append(act)
        return act

    def _build_actions(self):
        self.shortcut_actions: list[QAction] = []
        mb = self.menuBar()
        m = mb.addMenu("&File")
        self._action(m, "Open workspace…", "Ctrl+O", self.choose_workspace)
        self.recent_menu = m.addMenu("Recent workspaces")
        self._fill_recent_menu()
        m.addSeparator()
        self.act_save = self._action(m, "Save now", "Ctrl+S", self.controller.flush)
        self._action(m, "Export masks as PNG…", None, lambda: self.export_masks("png"),
                     tip="done and reviewed frames, as kbh export --format png")
        self._action(m, "Export masks as COCO JSON…", None, lambda: self.export_masks("coco"),
                     tip="done and reviewed frames, as kbh export --format coco")
        m.addSeparator()
        self._action(m, "Quit", "Ctrl+Q", self.close)

        m = mb.addMenu("&Edit")
        self.act_undo = self._action(m, "Undo", "Ctrl+Z", self.undo)
        self.act_redo = self._action(m, "Redo", ["Ctrl+Shift+Z", "Ctrl+Y"], self.redo)
        m.addSeparator()
        self.act_reset = self._action(m, "Reset frame (drop all strokes)", "Ctrl+Backspace", self.reset_frame)

        m = mb.addMenu("&Tools")
        group = QActionGroup(self)
        self.act_fg = self._action(m, "Foreground brush (hand)", "F", lambda: self.set_tool("foreground"), True)
        self.act_bg = self._action(m, "Background brush", "B", lambda: self.set_tool("background"), True)
        self.act_eraser = self._action(m, "Eraser (removes the parts of strokes it crosses)", "E",
                                       lambda: self.set_tool("eraser"), True)
        self.act_paint = self._action(m, "Paint the mask directly (left hand, right background)", "M",
                                      lambda: self.set_tool("paint"), True,
                                      tip="for places the engine cannot get: sets pixels over its mask")
        self.act_polygon = self._action(m, "Polygon (click vertices; Enter, double click or the first vertex "
                                           "closes; right button: background)", "L",
                                        lambda: self.set_tool("polygon"), True)
        for act in (self.act_fg, self.act_bg, self.act_eraser, self.act_paint, self.act_polygon):
            group.addAction(act)
        self.act_fg.setChecked(True)
        for act, short in ((self.act_fg, "Hand"), (self.act_bg, "Background"), (self.act_eraser, "Eraser"),
                           (self.act_paint, "Paint"), (self.act_polygon, "Polygon")):
            act.setIconText(short)  # toolbar label; the menu keeps the long text
        m.addSeparator()
        self._action(m, "Larger brush", "]", lambda: self.set_radius(self.canvas.radius * 1.25))
        self._action(m, "Smaller brush", "[", lambda: self.set_radius(self.canvas.radius / 1.25))

        m = mb.addMenu("&View")
        self.act_overlay = self._action(m, "Show mask and strokes", "O", self.set_overlay_visible, True)
        self.act_overlay.setChecked(True)
        self.act_overlay.setIconText("Overlay")
        self._action(m, "More opaque mask", ".", lambda: self.set_opacity(self.canvas.opacity + 0.1))
        self._action(m, "More transparent mask", ",", lambda: self.set_opacity(self.canvas.opacity - 0.1))
        m.addSeparator()
        self._action(m, "Zoom in", ["+", "="], lambda: self.canvas.zoom_by(1.25))
        self._action(m, "Zoom out", "-", lambda: self.canvas.zoom_by(1 / 1.25))
        self._action(m, "Fit frame in window", "0", self.canvas.fit)

        m = mb.addMenu("F&rame")
        self._action(m, "Next unlabeled frame", ["N", "Space"], lambda: self.go_todo(1))
        self._action(m, "Previous unlabeled frame", ["P", "Shift+Space"], lambda: self.go_todo(-1))
        self.act_follow_queue = self._action(m, "Next follows the model's uncertainty queue", "Ctrl+U",
                                             self.set_follow_queue, True,
                                             tip="Next opens the frame the model is least sure of (kbh queue)")
        self._action(m, "Next frame in list", "PgDown", lambda: self.go_neighbour(1))
        self._action(m, "Previous frame in list", "PgUp", lambda: self.go_neighbour(-1))
        m.addSeparator()
        self.act_done = self._action(m, "Mark done", "D", self.mark_done)
        self.act_done_advances = self._action(m, "Mark done moves to the next frame to do", None,
                                              self.set_done_advances, True)
        self.act_reviewed = self._action(m, "Mark reviewed", "R", lambda: self.mark("reviewed"))
        m.addSeparator()
        self.act_review_mode = self._action(m, "Review mode: step through done frames", "Ctrl+R",
                                            self.set_review_mode, True)
        self.act_accept = self._action(m, "Accept (reviewed) and next", "A", self.accept_and_next)
        self.act_send_back = self._action(m, "Send back with a note…", "S", self.send_back_and_next)
        m.addSeparator()
        self.act_propagate = self._action(m, "Propagate mask to next frame of sequence", "Ctrl+P", self.propagate)
        self.act_propagate.setIconText("Propagate")

        m = mb.addMenu("E&ngine")
        self.engine_menu = m
        group = QActionGroup(self)
        group.setExclusive(True)
        self.act_engine_grabcut = self._action(m, "GrabCut", None, self.use_grabcut, True,
                                               tip="The built-in engine: needs no training (the default)")
        self.act_engine_model = self._action(m, "Model…", None, lambda: self.choose_model("model"), True,
                                             tip="A stroke-conditioned model: choose a checkpoint trained "
                                                 "with `kbh train --interactive`")
        self.act_engine_hybrid = self._action(m, "Model + GrabCut…", None, lambda: self.choose_model("model-grabcut"),
                                              True, tip="The model's mask starts GrabCut, which then decides every "
                                                        "pixel (a checkpoint trained with `kbh train --interactive`)")
        for act in (self.act_engine_grabcut, self.act_engine_model, self.act_engine_hybrid):
            group.addAction(act)
        self.engine_group = group
        self._check_engine_action()
        if self.engine.checkpoint:
            self.settings.setValue("engine/checkpoint", self.engine.checkpoint)

        m = mb.addMenu("&Help")
        self._action(m, "Keyboard shortcuts", "F1", self.show_help)

    def _build_toolbar(self):
        tb = QToolBar("Tools", self)
        tb.setObjectName("tools_toolbar")
        for act in (self.act_fg, self.act_bg, self.act_eraser, self.act_paint, self.act_polygon):
            tb.addAction(act)
        tb.addSeparator()
        tb.addWidget(QLabel(" Brush radius "))
        self.radius_box = QDoubleSpinBox()
        self.radius_box.setRange(1, 200)
        self.radius_box.setDecimals(1)
        self.radius_box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.radius_box.valueChanged.connect(self.set_radius)
        tb.addWidget(self.radius_box)
        tb.addWidget(QLabel(" Mask opacity "))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setFixedWidth(120)
        self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.opacity_slider.valueChanged.connect(lambda v: self.set_opacity(v / 100.0))
        tb.addWidget(self.opacity_slider)
        tb.addAction(self.act_overlay)
        tb.addSeparator()
        for act in (self.act_done, self.act_reviewed, self.act_propagate):
            tb.addAction(act)
        self.addToolBar(tb)
        self.toolbar = tb

    def _build_statusbar(self):
        sb = self.statusBar()
        self.frame_label = QLabel()
        self.mode_label = QLabel("REVIEW MODE  ·  A accept  ·  S send back")
        self.mode_label.setStyleSheet("background: #7b3fbf; color: white; padding: 1px 6px; font-weight: bold;")
        self.mode_label.hide()
        self.engine_label = QLabel()
        self.busy_label = QLabel("idle")
        self.busy_label.setMinimumWidth(self.busy_label.fontMetrics().horizontalAdvance("running…") + 4)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setFormat("%v / %m labeled (%p%)")
        sb.addWidget(self.frame_label, 1)
        sb.addPermanentWidget(self.mode_label)
        sb.addPermanentWidget(self.engine_label)
        sb.addPermanentWidget(self.busy_label)
        sb.addPermanentWidget(self.progress)
        self._update_engine_label()

    # -- settings ----------------------------------------------------------------------------------------------
    def _restore_settings(self):
        s = self.settings
        self.set_opacity(float(s.value("view/opacity", 0.45)))
        self.set_done_advances(str(s.value("frame/done_advances", "true")).lower() == "true")
        geometry, state = s.value("window/geometry"), s.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        if state is not None:
            self.restoreState(state)

    def save_settings(self):
        self.settings.setValue("view/opacity", self.canvas.opacity)
        self.settings.setValue("frame/done_advances", "true" if self.act_done_advances.isChecked() else "false")
        self._remember_zoom()
        self._remember_recent()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()

    # -- the frame list ----------------------------------------------------------------------------------------
    def populate_list(self):
        frames = self.controller.frames
        uncertainty = self.controller.uncertainties()
        self.table.setColumnHidden(COLUMNS.index("Uncertainty"), not uncertainty)
        self.table.setSortingEnabled(False)  # rows are filled in place; sorting resumes after
        self.table.blockSignals(True)
        self.table.setRowCount(len(frames))
        self._rows: dict[int, list[QTableWidgetItem]] = {}
        for row, f in enumerate(frames):
            self._fill_row(row, f, uncertainty.get(f.id))
        self.table.blockSignals(False)
        self.table.setSortingEnabled(True)
        self._select_current_row()
        self.update_progress()

    def _fill_row(self, row, f, uncertainty: float | None = None):
        """Write frame `f` into table row `row` (its items are kept per frame id: sorting moves rows)."""
        session = self.controller.cached_session(f.id)
        status = session.status if session is not None else f.status
        n = len(session.strokes) if session is not None else f.n_strokes
        values = (f.key, status.replace("_", " "), f.person_id, f.sequence_id, n, round(f.seconds),
                  None if uncertainty is None else round(uncertainty, 4))
        items = self._rows.get(f.id)
        if items is None:
            items = []
            for col in range(len(COLUMNS)):
                item = QTableWidgetItem()
                self.table.setItem(row, col, item)
                items.append(item)
            items[0].setData(Qt.ItemDataRole.UserRole, f.id)
            self._rows[f.id] = items
        colour = QColor(STATUS_COLOURS.get(status, "#ffffff"))
        for item, value in zip(items, values):
            if isinstance(value, (int, float)):  # numbers sort as numbers
                item.setData(Qt.ItemDataRole.DisplayRole, value)
            elif value is not None or item.text():
                item.setText("" if value is None else str(value))
            item.setBackground(colour)
            item.setForeground(QColor("#000000"))

    def _update_row(self, frame_id):
        items = self._rows.get(frame_id)
        row = self.controller.row_of(frame_id)
        if items is not None and row is not None:
            sorting = self.table.isSortingEnabled()
            self.table.setSortingEnabled(False)  # an edited value must not move the row under the person
            pred = self.ws.prediction(frame_id) if not self.table.isColumnHidden(COLUMNS.index("Uncertainty")) \
                else None
            self._fill_row(items[0].row(), self.controller.frames[row], pred.uncertainty if pred else None)
            self.table.setSortingEnabled(sorting)

    def row_text(self, frame_id: int, column: str) -> str:
        """What the list shows for a frame (tests and screenshots)."""
        return self._rows[frame_id][COLUMNS.index(column)].text()

    def _select_current_row(self):
        cur = self.controller.current
        items = self._rows.get(cur.id) if cur is not None else None
        self.table.blockSignals(True)
        if items is None:
            self.table.clearSelection()
        else:
            self.table.selectRow(items[0].row())
            self.table.scrollToItem(items[0])
        self.table.blockSignals(False)

    def apply_filters(self):
        self.flush()
        self.controller.set_filter(self.status_filter.currentData(), self.person_filter.currentData())
        self.populate_list()
        self.canvas.setFocus()

    def update_progress(self):
        p = self.controller.progress()
        self.progress.setMaximum(max(1, p["total"]))
        self.progress.setValue(p["labeled"])
        self.progress.setToolTip(", ".join(f"{s.replace('_', ' ')} {p[s]}" for s in STATUSES))

    def _on_row_selected(self):
        rows = self.table.selectionModel().selectedRows()
        if rows:
            fid = self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)
            if fid is None:
                return
            if self.controller.current is None or fid != self.controller.current.id:
                self.open_frame(fid)

    # -- frames ------------------------------------------------------------------------------------------------
    def open_frame(self, frame_id: int) -> FrameSession:
        if self.controller.cached_session(frame_id) is None:
            self.saver.wait_idle()  # it loads from the workspace: let queued writes land first
        previous = self.controller.current
        if previous is not None and previous.id != frame_id:
            self._remember_zoom()  # of the frame being left
        session = self.controller.open(frame_id)
        if previous is not None and previous.id != frame_id:
            self._update_row(previous.id)
        self.canvas.set_image(self.controller.image(frame_id))
        self.set_radius(self.controller.brush_radius(self.controller.current), remember=False)
        self.refresh_canvas(session, force=True)
        self._show_note(session)
        if session.needs_engine:
            self.controller.submit(session)
        self._select_current_row()
        self._update_frame_label()
        self._update_undo_actions()
        return session

    @property
    def session(self) -> FrameSession | None:
        return self.controller.session

    def set_follow_queue(self, on: bool):
        self.controller.follow_queue = bool(on)
        self.act_follow_queue.setChecked(bool(on))

    def go_todo(self, step: int):
        f = self.controller.next_todo(step)
        if f is None:
            self.statusBar().showMessage("no unlabeled frame left in this list", 4000)
            return
        self.open_frame(f.id)

    def go_neighbour(self, step: int):
        f = self.controller.neighbour(step)
        if f is not None:
            self.open_frame(f.id)

    def _show_note(self, session: FrameSession) -> None:
        if session.note:
            self.note_banner.setText(f"Sent back by a reviewer: {session.note}")
            self.statusBar().showMessage(f"note: {session.note}", 10000)
        self.note_banner.setVisible(bool(session.note))

    def _remember_zoom(self):
        if self.controller.current is not None:
            self.controller.remember(ZOOM, "fit" if self.canvas._fit_pending else f"{self.canvas.zoom():.6g}")

    # -- review and workflow -------------------------------------------------------------------------------------
    def set_done_advances(self, on: bool):
        self.act_done_advances.setChecked(bool(on))

    def mark_done(self):
        """D: mark done, then (unless switched off in the Frame menu) open the next frame to do."""
        self.mark("done")
        if self.act_done_advances.isChecked():
            self.go_todo(1)

    def set_review_mode(self, on: bool):
        self.controller.review_mode = bool(on)
        self.act_review_mode.setChecked(bool(on))
        self.mode_label.setVisible(bool(on))
        self.statusBar().showMessage("review mode: N steps through done frames; A accepts, S sends back with a "
                                     "note" if on else "review mode off", 6000)
        if on and (self.session is None or self.session.status not in ("done",)):
            self.go_todo(1)

    def accept_and_next(self):
        if self.edit(lambda s: s.accept()) is not None and self.controller.review_mode:
            self.go_todo(1)

    def ask_note(self) -> str | None:
        from PySide6.QtWidgets import QInputDialog

        text, ok = QInputDialog.getText(self, "Send back", "What needs fixing (shown to the next person):")
        return text if ok else None

    def send_back_and_next(self):
        if self.session is None:
            return
        note = self.ask_note()
        if note is None:
            return
        self.edit(lambda s: s.send_back(note))
        self._show_note(self.session)
        if self.controller.review_mode:
            self.go_todo(1)

    # -- workspaces ----------------------------------------------------------------------------------------------
    def _recent(self) -> list[str]:
        value = self.settings.value("recent/workspaces", [])
        return [v for v in ([value] if isinstance(value, str) else list(value or [])) if v]

    def _remember_recent(self):
        here = str(Path(self.ws.root).resolve())
        self.settings.setValue("recent/workspaces", [here] + [r for r in self._recent() if r != here][:MAX_RECENT - 1])

    def _fill_recent_menu(self):
        self.recent_menu.clear()
        for path in self._recent():
            act = self.recent_menu.addAction(path)
            act.triggered.connect(lambda _=False, p=path: self.open_workspace(p))
        self.recent_menu.setEnabled(bool(self._recent()))

    def choose_workspace(self):
        path = QFileDialog.getExistingDirectory(self, "Open a kbh workspace", str(Path(self.ws.root).parent))
        if path:
            self.open_workspace(path)

    def open_workspace(self, path: str):
        """Open another workspace in a new window; this one closes (everything saved) once it is up."""
        try:
            ws = Workspace.open(path)
        except KbhError as e:
            QMessageBox.warning(self, "Not opened", str(e))
            return None
        self._remember_recent()
        win = AnnotatorWindow(ws, settings=self.settings, annotator=self.controller.annotator, engine=self.engine)
        win.owns_workspace = True
        win.show()
        self.close()
        return win

    def export_masks(self, fmt: str, out: str | None = None):
        """File > Export: the done and reviewed masks, as `kbh export` writes them."""
        from kbh.mask_export import export

        if out is None:
            start = str(Path(self.ws.root).parent / (f"{Path(self.ws.root).name}_masks" +
                                                     (".json" if fmt == "coco" else "")))
            out = (QFileDialog.getSaveFileName(self, "Export COCO JSON", start, "JSON (*.json)")[0] if fmt == "coco"
                   else QFileDialog.getExistingDirectory(self, "Export PNG masks into", str(Path(start).parent)))
            if not out:
                return None
        self.controller.flush()
        self.saver.wait_idle()
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            n = export(self.ws, Path(out), fmt, progress=False)
        except KbhError as e:
            QMessageBox.warning(self, "Not exported", str(e))
            return None
        finally:
            QApplication.restoreOverrideCursor()
        self.statusBar().showMessage(f"exported {n} masks to {out}", 8000)
        return n

    # -- edits -------------------------------------------------------------------------------------------------
    def edit(self, make_change):
        """Apply a change to the open frame through the controller, then repaint what it moved."""
        change = self.controller.edit(make_change)
        if change is not None:
            self.show_change(self.session)
        return change

    def undo(self):
        return self.edit(lambda s: s.undo())

    def redo(self):
        return self.edit(lambda s: s.redo())

    def on_stroke(self, stroke):
        self.edit(lambda s: s.add_stroke(stroke))

    def on_erase(self, points, radius):
        self.edit(lambda s: s.erase(points, radius))

    def reset_frame(self):
        self.edit(lambda s: s.reset())

    def mark(self, status: str):
        self.edit(lambda s: s.set_status(status))

    def propagate(self):
        """Start the next frame of the sequence from this frame's mask. This frame's status stays as it is."""
        if self.session is None:
            return
        try:
            nxt = self.controller.propagate()
        except KbhError as e:
            self.statusBar().showMessage(str(e), 6000)
            return
        self.worker.forget(nxt.id)
        self._update_row(nxt.id)
        self.update_progress()
        self.open_frame(nxt.id)
        self.statusBar().showMessage(f"started {nxt.key} from the mask of the previous frame", 4000)

    def show_change(self, session: FrameSession) -> None:
        """Repaint after a change of `session` (the controller already sent it to the engine or the saver)."""
        if self.controller.current is not None and session.frame_id == self.controller.current.id:
            self.refresh_canvas(session)
            self._update_frame_label()
            self._update_undo_actions()
        self._update_row(session.frame_id)

    def _update_undo_actions(self):
        s = self.session
        for act, word, text in ((self.act_undo, "Undo", s.undo_text if s else None),
                                (self.act_redo, "Redo", s.redo_text if s else None)):
            act.setEnabled(text is not None)
            act.setText(f"{word} {text}" if text else word)

    def refresh_canvas(self, session: FrameSession, force: bool = False):
        shown = (session.frame_id, id(session), session.mask_version)
        if force or shown != self._shown_mask:  # a new stroke leaves the mask as it is until its result
            self.canvas.set_mask(session.mask)
            self._shown_mask = shown
        self.canvas.set_strokes(session.strokes)

    def on_result(self, frame_id: int, generation: int, mask) -> None:
        if not self.controller.take_result(frame_id, generation, mask):
            return  # stale: a newer stroke list is on its way
        if self.controller.current is not None and frame_id == self.controller.current.id:
            self.refresh_canvas(self.controller.cached_session(frame_id))

    def on_failed(self, frame_id: int, generation: int, message: str) -> None:
        self.statusBar().showMessage(f"{self.engine.label} failed on frame {frame_id}: {message}", 10000)

    def _on_busy(self, busy: bool):
        self.busy_label.setText("running…" if busy else "idle")

    # -- engine ------------------------------------------------------------------------------------------------
    def set_engine(self, name: str, checkpoint: str | Path | None = None) -> bool:
        """Switch to engine `name` (its checkpoint for a model). On failure the error is shown (status bar and
        a message box) and the current engine stays; returns whether the switch happened."""
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)  # loading a model can take a moment
        try:
            choice = build_engine(name, checkpoint)
        except Exception as e:  # a bad checkpoint, a missing part: the person keeps working with the old engine
            self._engine_failed(one_line(e))
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self.use_engine(choice)
        return True

    def use_engine(self, choice: EngineChoice) -> None:
        """Run `choice` from now on: the worker drops the old engines and the open frame's strokes are run again,
        so its mask is the new engine's at once (one undo step: undo shows the old engine's mask)."""
        self.engine = choice
        self.engine_error = None
        self._engine_epoch = self.worker.set_engine_factory(choice.factory)
        if choice.checkpoint:
            self.settings.setValue("engine/checkpoint", choice.checkpoint)
        self._check_engine_action()
        self._update_engine_label()
        self.edit(lambda s: s.rerun(f"Run strokes with {choice.label}"))
        self.statusBar().showMessage(f"engine: {choice.label}", 4000)

    def use_grabcut(self):
        if self.engine.is_default:
            self._check_engine_action()
            return
        self.set_engine("grabcut")

    def choose_model(self, name: str = "model"):
        """Engine > Model… (and Model + GrabCut…): pick a checkpoint (the last one is offered first) and switch
        to engine `name` with it."""
        path = self.choose_checkpoint()
        if not path:
            self._check_engine_action()  # cancelled: the menu shows the engine still in use
            return
        self.set_engine(name, path)

    def choose_checkpoint(self) -> str | None:
        last = self.settings.value("engine/checkpoint", "") or ""
        start = last if last and Path(last).parent.is_dir() else str(self.ws.root)
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint (kbh train --interactive)", start,
                                              "Checkpoints (*.pt *.pth *.ckpt);;All files (*)")
        return path or None

    def _engine_failed(self, message: str):
        self.engine_error = message
        self._check_engine_action()
        self.statusBar().showMessage(f"engine not changed ({self.engine.label} stays): {message}", 15000)
        if self.engine_error_box is not None:
            self.engine_error_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, "Engine not changed",
                          f"{message}\n\nStill using {self.engine.label}.", QMessageBox.StandardButton.Ok, self)
        box.open()  # window-modal, without a nested event loop
        self.engine_error_box = box

    def _on_engine_built(self, epoch: int, label: str):
        """An engine of the current factory tells its own label (e.g. the model's name and training step)."""
        if epoch == self._engine_epoch and label and label != self.engine.label:
            self.engine = EngineChoice(self.engine.name, self.engine.factory, self.engine.checkpoint, label)
            self._update_engine_label()

    def _check_engine_action(self):
        act = {"grabcut": self.act_engine_grabcut, "model-grabcut": self.act_engine_hybrid}.get(
            self.engine.name, self.act_engine_model)
        act.setChecked(True)
        for a in (self.act_engine_model, self.act_engine_hybrid):
            a.setToolTip(self.engine.checkpoint or "choose a checkpoint")

    def _update_engine_label(self):
        self.engine_label.setText(f"Engine: {self.engine.label}")
        self.engine_label.setToolTip(self.engine.checkpoint or "built in, needs no training")

    def _on_activity(self):
        s = self.session
        if s is not None:
            s.activity()

    # -- saving ------------------------------------------------------------------------------------------------
    def all_saved(self) -> bool:
        """Every edit so far is in the workspace: nothing unsettled or unsaved, nothing queued."""
        return self.controller.all_saved() and self.saver.is_idle()

    def flush(self):
        self.controller.flush()

    def _on_saved(self, frame_id: int, n: int):
        if self._closed:
            self.controller.acked += n
            return  # a write acknowledged after the window closed: nothing left to show
        self.controller.acknowledge(frame_id, n, ok=True)
        self._update_row(frame_id)
        self.update_progress()
        self._update_frame_label()

    def _on_save_failed(self, frame_id: int, n: int, message: str):
        self.controller.acknowledge(frame_id, n, ok=False)  # retried by the autosave timer
        self.statusBar().showMessage(f"could not save frame {frame_id}: {message}", 10000)

    def closeEvent(self, event):
        self.autosave_timer.stop()
        self.controller.leave()
        self.controller.flush()
        self.save_settings()
        self.worker.stop()
        self.saver.stop(drain=True)
        self._closed = True
        if self.owns_workspace:
            self.ws.close()
        super().closeEvent(event)

    # -- view settings -----------------------------------------------------------------------------------------
    def set_tool(self, tool: str):
        self.canvas.set_tool(tool)
        {"foreground": self.act_fg, "background": self.act_bg, "eraser": self.act_eraser, "paint": self.act_paint,
         "polygon": self.act_polygon}[tool].setChecked(True)

    def set_radius(self, radius: float, remember: bool = True):
        """The brush radius in image pixels; the person's choice is kept with the workspace as a fraction of the
        frame's diagonal, so it looks the same on every frame size."""
        self.canvas.set_radius(radius)
        if remember and self.controller.current is not None:
            self.controller.set_brush_radius(self.canvas.radius, self.controller.current)
        if abs(self.radius_box.value() - self.canvas.radius) > 1e-6:
            self.radius_box.blockSignals(True)
            self.radius_box.setValue(self.canvas.radius)
            self.radius_box.blockSignals(False)

    def set_opacity(self, value: float):
        self.canvas.set_opacity(value)
        slider = round(self.canvas.opacity * 100)
        if self.opacity_slider.value() != slider:
            self.opacity_slider.blockSignals(True)
            self.opacity_slider.setValue(slider)
            self.opacity_slider.blockSignals(False)
        self.settings.setValue("view/opacity", self.canvas.opacity)

    def set_overlay_visible(self, visible: bool):
        self.canvas.set_overlay_visible(visible)
        if self.act_overlay.isChecked() != bool(visible):
            self.act_overlay.setChecked(bool(visible))

    def _update_frame_label(self):
        f, s = self.controller.current, self.session
        if f is None or s is None:
            self.frame_label.setText("no frame")
            return
        self.frame_label.setText(
            f"{f.key}  ·  {f.width}x{f.height}  ·  {s.status.replace('_', ' ')}  ·  {len(s.strokes)} strokes  ·  "
            f"source {s.source}  ·  {f.seconds + s.pending_seconds:.0f} s spent")

    # -- help --------------------------------------------------------------------------------------------------
    def shortcut_table(self) -> list[tuple[str, str]]:
        rows = []
        for act in self.shortcut_actions:
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in act.shortcuts())
            if keys:
                name = {id(self.act_undo): "Undo", id(self.act_redo): "Redo"}.get(id(act), act.text())
                rows.append((name.replace("&", ""), keys))  # undo/redo texts name the step; help names the action
        return rows

    def show_help(self):
        self.help_dialog = HelpDialog(self.shortcut_table(), self)
        self.help_dialog.show()


class HelpDialog(QDialog):
    def __init__(self, rows, parent=None):
        super().__init__(parent)
        self.setWindowTitle("kbh annotate — keyboard shortcuts")
        layout = QVBoxLayout(self)
        intro = QLabel("Draw short strokes: <b>left button</b> with the current brush, <b>right button</b> for "
                       "background. <b>Wheel</b> zooms, <b>middle button</b> or <b>Alt + drag</b> pans. Every "
                       "change is saved to the workspace at once.<br>The mask comes from the engine chosen in the "
                       "<b>Engine</b> menu: <b>GrabCut</b> (built in, the default), a trained <b>Model…</b> "
                       "(a checkpoint of <tt>kbh train --interactive</tt>), or <b>Model + GrabCut…</b> (the model's "
                       "mask starts GrabCut); the status bar shows which one runs. "
                       "Switching runs the open frame's strokes again with the new engine (undo goes back).<br>"
                       "Where the engine cannot get it right, <b>Paint</b> (M) and <b>Polygon</b> (L) set mask "
                       "pixels directly, over the engine's mask (the frame's source becomes <i>manual</i>); the "
                       "<b>Eraser</b> removes the parts of strokes it crosses. Every change is undoable, also after "
                       "the frame is reopened.<br><b>Propagate</b> (Ctrl+P) starts the next frame of the sequence "
                       "from this frame's mask and leaves this frame's status as it is; <b>D</b> marks done and "
                       "moves to the next frame to do (switch that off in the Frame menu). <b>Review mode</b> "
                       "(Ctrl+R) steps through done frames: <b>A</b> accepts, <b>S</b> sends back with a note "
                       "that the next person sees.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(("Action", "Keys"))
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for r, (text, keys) in enumerate(rows):
            table.setItem(r, 0, QTableWidgetItem(text))
            table.setItem(r, 1, QTableWidgetItem(keys))
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(table)
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(520, 560)

