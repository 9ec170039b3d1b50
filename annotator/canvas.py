"""The drawing canvas: the image, the mask overlay and its contour, the strokes, and a brush cursor.

A QGraphicsView: wheel zooms about the pointer, the middle button (or Alt + left) pans, the left button draws
with the current tool (foreground or background hints, eraser, paint, polygon) and the right button draws
background (a background hint, background paint, or a background polygon). Overlays are
QPixmaps built with numpy in one pass, so a 1280x720 frame redraws in milliseconds. The canvas holds no
annotation state; it reports finished strokes and eraser paths as signals, in image pixel coordinates.

`mask_serial` counts the masks set on the canvas; `painted_serial` is the newest of them the viewport has painted
and `painted_at` when its first paint finished (time.perf_counter): what is on screen, for latency measurements.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPainterPath, QPen, QPixmap, qRgba
from PySide6.QtWidgets import (QGraphicsEllipseItem, QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsScene,
                               QGraphicsView)

from kbh.strokes import BACKGROUND, FOREGROUND, PAINT, POLYGON, SCRIBBLE, Stroke

from .qtcompat import immortalize_singletons

immortalize_singletons()  # PySide6 6.12 on Python 3.11 leaks references to None/True/False

TOOLS = ("foreground", "background", "eraser", "paint", "polygon")
FG_COLOR = QColor(40, 220, 60, 200)
BG_COLOR = QColor(235, 50, 50, 200)
PAINT_FG_COLOR = QColor(0, 230, 230, 200)  # direct edits look different from the engine's hints
PAINT_BG_COLOR = QColor(230, 0, 230, 200)
CLOSE_PX = 8  # a click this close (screen pixels) to a polygon's first vertex closes it
ERASER_COLOR = QColor(255, 255, 255, 150)
MASK_RGB = (30, 144, 255)  # fill of the mask overlay
CONTOUR_RGB = (255, 230, 0)
MIN_RADIUS, MAX_RADIUS = 1.0, 200.0


def rgb_pixmap(image: np.ndarray) -> QPixmap:
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    h, w = image.shape[:2]
    return QPixmap.fromImage(QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())


def overlay_values(mask: np.ndarray) -> np.ndarray:
    """uint8 (H, W): 0 outside the mask, 1 inside, 2 on its inner boundary (the contour, 1 px)."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    inner = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return m + (m - inner)  # 1 + 1 on the boundary; values stay in {0, 1, 2}


def overlay_pixmap(values: np.ndarray, opacity: float) -> QPixmap:
    """One indexed-colour image for fill and contour: the fill's alpha is the opacity, the contour is opaque.
    Built without a per-pixel pass in Python; a 1280x720 overlay takes a few milliseconds."""
    values = np.ascontiguousarray(values, dtype=np.uint8)
    h, w = values.shape
    img = QImage(values.data, w, h, w, QImage.Format.Format_Indexed8)
    img.setColorTable([qRgba(0, 0, 0, 0), qRgba(*MASK_RGB, round(255 * opacity)), qRgba(*CONTOUR_RGB, 255)])
    return QPixmap.fromImage(img)  # converts (copies) now, while `values` is alive


def stroke_path(points, closed: bool = False) -> QPainterPath:
    """Scene path through image pixel centres (pixel (x, y) covers [x, x+1) x [y, y+1) in the scene)."""
    path = QPainterPath()
    if not points:
        return path
    x0, y0 = points[0]
    path.moveTo(x0 + 0.5, y0 + 0.5)
    if len(points) == 1:
        path.lineTo(x0 + 0.5001, y0 + 0.5)  # a dot: a zero-length segment still gets round caps
    for x, y in points[1:]:
        path.lineTo(x + 0.5, y + 0.5)
    if closed:
        path.closeSubpath()
    return path


def stroke_colour(kind: str, label: int) -> QColor:
    """Hints green (hand) and red (background); direct edits, which set pixels themselves, cyan and magenta."""
    if kind == "scribble":
        return FG_COLOR if label == FOREGROUND else BG_COLOR
    return PAINT_FG_COLOR if label == FOREGROUND else PAINT_BG_COLOR


def stroke_pen(color: QColor, radius: float) -> QPen:
    pen = QPen(color, 2 * radius)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    return pen


class Canvas(QGraphicsView):
    strokeFinished = Signal(object)  # Stroke
    eraseFinished = Signal(object, float)  # list of (x, y) image points, radius
    activity = Signal()
    zoomChanged = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setBackgroundBrush(QBrush(QColor(40, 40, 40)))
        self.tool = "foreground"
        self.radius = 6.0
        self._opacity = 0.45
        self._overlay_visible = True
        self._image_shape: tuple[int, int] | None = None
        self._image_item = QGraphicsPixmapItem()
        self._overlay_item = QGraphicsPixmapItem()  # mask fill + contour
        self._overlay_values: np.ndarray | None = None
        self._strokes_items: list[QGraphicsPathItem] = []
        self._live = QGraphicsPathItem()
        self._cursor = QGraphicsEllipseItem()
        for z, item in enumerate((self._image_item, self._overlay_item)):
            item.setZValue(z)
            self.scene().addItem(item)
        self._image_item.setTransformationMode(Qt.TransformationMode.FastTransformation)
        self._live.setZValue(5)
        self.scene().addItem(self._live)
        self._cursor.setZValue(10)
        self._cursor.setPen(QPen(QColor(255, 255, 255), 0))  # cosmetic: 1 screen pixel at any zoom
        self._cursor.setVisible(False)
        self.scene().addItem(self._cursor)
        self._drawing: str | None = None  # tool of the stroke under way
        self._polygon: list[tuple[float, float]] = []  # vertices of the polygon under way
        self._polygon_label = FOREGROUND
        self._points: list[tuple[float, float]] = []
        self._pan_from: QPointF | None = None
        self._fit_pending = True
        self.mask_serial = 0  # masks set so far (set_mask)
        self.painted_serial = 0  # the newest of them painted on the viewport
        self.painted_at = 0.0  # perf_counter() when its first paint finished

    # -- content -----------------------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray) -> None:
        self._image_item.setPixmap(rgb_pixmap(image))
        shape = image.shape[:2]
        if shape != self._image_shape:
            self._image_shape = shape
            self.scene().setSceneRect(QRectF(0, 0, shape[1], shape[0]))
            self.fit()
        self._cancel_stroke()

    def set_mask(self, mask: np.ndarray | None) -> None:
        self.mask_serial += 1
        if mask is None:
            self._overlay_values = None
            self._overlay_item.setPixmap(QPixmap())
            return
        self._overlay_values = overlay_values(mask)
        self._overlay_item.setPixmap(overlay_pixmap(self._overlay_values, self._opacity))

    def set_strokes(self, strokes: list[Stroke]) -> None:
        for item in self._strokes_items:
            self.scene().removeItem(item)
        self._strokes_items = []
        for s in strokes:
            item = QGraphicsPathItem(stroke_path(s.points, closed=s.kind == POLYGON))
            if s.kind == POLYGON:
                pen = QPen(stroke_colour(s.kind, s.label), 2, Qt.PenStyle.DashLine)
                pen.setCosmetic(True)  # 2 screen pixels at any zoom
                item.setPen(pen)
            else:
                item.setPen(stroke_pen(stroke_colour(s.kind, s.label), s.radius))
            item.setZValue(4)
            item.setVisible(self._overlay_visible)
            self.scene().addItem(item)
            self._strokes_items.append(item)

    # -- appearance --------------------------------------------------------------------------------------------
    @property
    def opacity(self) -> float:
        return self._opacity

    def set_opacity(self, value: float) -> None:
        self._opacity = float(min(1.0, max(0.0, value)))
        if self._overlay_values is not None:
            self._overlay_item.setPixmap(overlay_pixmap(self._overlay_values, self._opacity))

    @property
    def overlay_visible(self) -> bool:
        return self._overlay_visible

    def set_overlay_visible(self, visible: bool) -> None:
        """False shows the image alone (no mask, contour or strokes)."""
        self._overlay_visible = bool(visible)
        for item in (self._overlay_item, *self._strokes_items):
            item.setVisible(self._overlay_visible)

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        if tool != "polygon":
            self.cancel_polygon()
        self.tool = tool
        self._update_cursor()

    def set_radius(self, radius: float) -> None:
        self.radius = float(min(MAX_RADIUS, max(MIN_RADIUS, radius)))
        self._update_cursor()

    # -- zoom ----------------------------------------------------------------------------------------------------
    def zoom(self) -> float:
        return self.transform().m11()

    def zoom_by(self, factor: float) -> None:
        new = self.zoom() * factor
        if 0.02 <= new <= 64:
            self._fit_pending = False  # the person chose a zoom: window resizes keep it
            self.scale(factor, factor)
            self.zoomChanged.emit(self.zoom())

    def fit(self) -> None:
        if self._image_shape is not None:
            self.fitInView(self.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
            self._fit_pending = True
            self.zoomChanged.emit(self.zoom())

    def paintEvent(self, event):
        super().paintEvent(event)
        if self.painted_serial != self.mask_serial:  # the first paint that shows this mask
            self.painted_serial, self.painted_at = self.mask_serial, time.perf_counter()

    def wheelEvent(self, event):
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25 ** steps)
        event.accept()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if self._fit_pending and self._image_shape is not None:
            self.fit()

    # -- mouse ---------------------------------------------------------------------------------------------------
    def image_point(self, view_pos) -> tuple[float, float]:
        p = self.mapToScene(view_pos.toPoint() if hasattr(view_pos, "toPoint") else view_pos)
        return (p.x() - 0.5, p.y() - 0.5)

    def mousePressEvent(self, event):
        self.activity.emit()
        button = event.button()
        alt = bool(event.modifiers() & Qt.KeyboardModifier.AltModifier)
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and alt):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if self._image_shape is None or button not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            return
        right = button == Qt.MouseButton.RightButton
        if self.tool == "polygon":
            self._polygon_click(self.image_point(event.position()), event.position(), BACKGROUND if right else
                                FOREGROUND)
            return
        if self.tool == "paint":
            self._drawing = "paint_bg" if right else "paint_fg"
        else:
            self._drawing = "background" if right else self.tool
        self._points = [self.image_point(event.position())]
        self._live.setPen(self._pen_for(self._drawing))
        self._live.setPath(stroke_path(self._points))
        self._live.setVisible(True)

    def mouseMoveEvent(self, event):
        self.activity.emit()
        pos = event.position()
        if self._pan_from is not None:
            delta = pos - self._pan_from
            self._pan_from = pos
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(delta.y()))
            return
        x, y = self.image_point(pos)
        self._cursor.setRect(QRectF(x + 0.5 - self.radius, y + 0.5 - self.radius, 2 * self.radius, 2 * self.radius))
        self._cursor.setVisible(self._image_shape is not None)
        if self._drawing is not None:
            if (x, y) != self._points[-1]:
                self._points.append((x, y))
                self._live.setPath(stroke_path(self._points))

    def mouseReleaseEvent(self, event):
        self.activity.emit()
        if self._pan_from is not None:
            self._pan_from = None
            self.viewport().unsetCursor()
            self._fit_pending = False
            return
        if self._drawing is None:
            return
        tool, points = self._drawing, self._clip(self._points)
        self._cancel_stroke()
        if not points:
            return
        if tool == "eraser":
            self.eraseFinished.emit(points, self.radius)
        else:
            label = FOREGROUND if tool in ("foreground", "paint_fg") else BACKGROUND
            kind = PAINT if tool.startswith("paint") else SCRIBBLE
            self.strokeFinished.emit(Stroke(label, self.radius, tuple(points), kind))

    # -- polygon tool --------------------------------------------------------------------------------------------
    def _polygon_click(self, point, view_pos, label: int) -> None:
        """A vertex; a click near the first vertex (or Enter, or a double click) closes the polygon."""
        if self._polygon and (view_pos - self.mapFromScene(QPointF(self._polygon[0][0] + 0.5,
                                                                   self._polygon[0][1] + 0.5))).manhattanLength() \
                <= CLOSE_PX and len(self._polygon) >= 3:
            self.finish_polygon()
            return
        if not self._polygon:
            self._polygon_label = label
        h, w = self._image_shape
        self._polygon.append((min(max(point[0], 0.0), w - 1.0), min(max(point[1], 0.0), h - 1.0)))
        pen = QPen(stroke_colour(POLYGON, self._polygon_label), 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._live.setPen(pen)
        self._live.setPath(stroke_path(self._polygon))
        self._live.setVisible(True)

    def finish_polygon(self) -> None:
        vertices, label = self._polygon, self._polygon_label
        self._polygon = []
        self._live.setVisible(False)
        if len(vertices) >= 3:
            self.strokeFinished.emit(Stroke(label, 1.0, tuple(vertices), POLYGON))

    def cancel_polygon(self) -> None:
        self._polygon = []
        self._live.setVisible(False)

    def mouseDoubleClickEvent(self, event):
        if self.tool == "polygon" and self._polygon:
            self.finish_polygon()
            return
        super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event):
        if self.tool == "polygon" and self._polygon and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.finish_polygon()
            return
        if self._polygon and event.key() == Qt.Key.Key_Escape:
            self.cancel_polygon()
            return
        super().keyPressEvent(event)

    def leaveEvent(self, event):
        self._cursor.setVisible(False)
        super().leaveEvent(event)

    def _clip(self, points):
        """Points inside the image (a stroke that wanders off the frame keeps its part on it)."""
        h, w = self._image_shape
        return [(min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)) for x, y in points
                if -self.radius <= x < w + self.radius and -self.radius <= y < h + self.radius]

    def _cancel_stroke(self):
        self._drawing = None
        self._points = []
        self._live.setVisible(False)

    def _pen_for(self, tool: str) -> QPen:
        color = {"foreground": FG_COLOR, "background": BG_COLOR, "eraser": ERASER_COLOR, "paint_fg": PAINT_FG_COLOR,
                 "paint_bg": PAINT_BG_COLOR}[tool]
        return stroke_pen(color, self.radius)

    def _update_cursor(self):
        r = self._cursor.rect()
        if not r.isNull():
            c = r.center()
            self._cursor.setRect(QRectF(c.x() - self.radius, c.y() - self.radius, 2 * self.radius, 2 * self.radius))
        color = {"foreground": FG_COLOR, "background": BG_COLOR, "eraser": ERASER_COLOR, "paint": PAINT_FG_COLOR,
                 "polygon": PAINT_FG_COLOR}[self.tool]
        self._cursor.setBrush(QBrush(QColor(color.red(), color.green(), color.blue(), 60)))
