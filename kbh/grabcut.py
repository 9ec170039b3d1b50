"""The GrabCut engine: image + scribbles (+ optional prior) -> mask. No Qt.

One `GrabCutSession` per frame. `update(strokes)` takes the whole current stroke list (after each stroke, undo or
redo) and returns the mask at full resolution. Why it is fast:

- Large frames are segmented at a working resolution (`max_side`) and brought back to full resolution with a
  guided filter on the image, so the mask follows the image edges rather than the blocky upsampled labels.
- The colour models (OpenCV's 5-component GMMs for hand and background) are kept between calls: a new stroke
  continues from them instead of re-initialising with k-means.
- Each update is coarse-to-fine: the GrabCut iterations (learn the models, cut) run on the whole image
  subsampled to about `coarse_pixels`, which is cheap and global; then one cut with the models frozen runs at
  working resolution only on the bounding box of what changed coarsely plus a margin around the new stroke,
  with the rest of that box pinned to the current labels so the result joins the mask seamlessly.
- With a prior, pixels far inside or outside the confident region are definite; only the band stays open.
- Results are cached by stroke list, so undo/redo returns the earlier mask at once and identically.

Strokes are hard labels: every stroked pixel has its stroke's label in the output (the last stroke wins where
strokes overlap). A session is not thread-safe: call it from one thread at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from .strokes import BACKGROUND, FOREGROUND, Stroke, draw_stroke, hard_labels

_MODEL_SIZE = 65  # OpenCV GMM: 5 weights + 5x3 means + 5x9 covariances
_MIN_SAMPLES = 10  # fewer pixels of a class than this cannot seed a 5-component GMM reliably


@dataclass
class _State:
    """Everything `update` needs to continue from a stroke list; cached per stroke list for undo/redo."""

    labels: np.ndarray  # uint8 (h, w) GC_* codes at working resolution
    c_labels: np.ndarray | None  # the same at the coarse resolution
    bgd: np.ndarray | None  # (1, 65) float64 or None when no colour model exists yet
    fgd: np.ndarray | None
    mask_bits: np.ndarray  # full-res mask, np.packbits
    hard_fg_bits: np.ndarray  # full-res hard labels, packed: foreground / background footprints
    hard_bg_bits: np.ndarray


class GrabCutSession:
    """Interactive GrabCut on one frame.

    image: RGB uint8 (H, W, 3). prior: float (H, W) hand probability in [0, 1] (a model's pre-annotation) or a
    {0, 1} mask (the previous frame's). A probability map: pixels with p > prior_high / p < prior_low are
    confident, probable hand/background within 2 working pixels of the uncertain ones, definite farther away;
    uncertain pixels are open (starting as p >= 0.5). A {0, 1} mask: open within `band` working pixels of its
    contour (None: 5% of the working longer side), definite farther away. Definite prior pixels within
    `open_radius` working pixels of a stroke (None: 10% of the working longer side) become probable again, so
    a correction can spread over a confidently wrong region. update([]) returns the prior with its open
    pixels decided by GrabCut. max_side: longer side of the working resolution. iterations: GrabCut iterations per update.
    roi_margin: working pixels around a new stroke that are always re-cut at working resolution (None: 5% of
    the working longer side). coarse_pixels: size of the coarse image the GrabCut iterations run on.
    grow: without a prior, the first cut starts open pixels as probable hand where their Lab colour lies within
    this squared Mahalanobis distance of the hand strokes' colours and they connect to a hand stroke (0: off).
    cache_size: stroke lists whose results are kept for undo/redo.
    """

    label = "GrabCut"

    def __init__(
        self,
        image: np.ndarray,
        prior: np.ndarray | None = None,
        max_side: int = 400,
        iterations: int = 2,
        seed: int = 0,
        *,
        prior_high: float = 0.9,
        prior_low: float = 0.1,
        band: int | None = None,
        open_radius: int | None = None,
        roi_margin: int | None = None,
        coarse_pixels: int = 20000,
        cache_size: int = 32,
        grow: float = 50.0,
    ):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {max_side}")
        if not 0.0 <= prior_low <= 0.5 <= prior_high <= 1.0:
            raise ValueError(f"need 0 <= prior_low <= 0.5 <= prior_high <= 1, got {prior_low}, {prior_high}")
        self._image = np.ascontiguousarray(image)
        self.shape = image.shape[:2]
        H, W = self.shape
        self._scale = min(1.0, max_side / max(H, W))
        if self._scale < 1.0:
            size = (max(1, round(W * self._scale)), max(1, round(H * self._scale)))
            self._work = cv2.resize(self._image, size, interpolation=cv2.INTER_AREA)
            # Guide for bringing masks back to full resolution: grey image in [0, 1].
            self._guide = cv2.cvtColor(self._image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
            self._guide_work = cv2.cvtColor(self._work, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        else:
            self._work = self._image
            self._guide = self._guide_work = None
        h, w = self._work.shape[:2]
        self.iterations = iterations
        self.seed = seed
        self.prior_high, self.prior_low = prior_high, prior_low
        self.band = band if band is not None else max(3, round(0.05 * max(h, w)))
        self.open_radius = open_radius if open_radius is not None else max(8, round(0.1 * max(h, w)))
        self.roi_margin = roi_margin if roi_margin is not None else max(6, round(0.05 * max(h, w)))
        self._coarse_stride = max(1, int(np.ceil(np.sqrt(h * w / coarse_pixels))))
        s = self._coarse_stride
        self._coarse = np.ascontiguousarray(self._work[::s, ::s]) if s > 1 else self._work
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[Stroke, ...], _State] = OrderedDict()
        self.grow = grow
        self._lab: np.ndarray | None = None
        self._has_prior = prior is not None
        self._base = self._base_labels(prior)
        self._strokes: tuple[Stroke, ...] | None = None
        self._labels: np.ndarray | None = None
        self._c_labels: np.ndarray | None = None  # coarse GC labels, the coarse level's own state
        self._bgd: np.ndarray | None = None
        self._fgd: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._hard = np.full(self.shape, -1, np.int8)  # full-res hard labels of self._strokes

    # ---- public ------------------------------------------------------------------------------------------

    @property
    def mask(self) -> np.ndarray | None:
        """The last mask returned by `update` (uint8 {0,1}, full resolution), or None before the first."""
        return None if self._mask is None else self._mask.copy()

    @property
    def working_shape(self) -> tuple[int, int]:
        return self._work.shape[:2]

    def update(self, strokes: list[Stroke]) -> np.ndarray:
        """Mask (uint8 (H, W) {0,1}) for the whole current stroke list."""
        strokes = tuple(strokes)
        if strokes == self._strokes and self._mask is not None:
            return self._mask.copy()
        cached = self._cache.get(strokes)
        if cached is not None:
            self._restore(strokes, cached)
            self._cache.move_to_end(strokes)
            return self._mask.copy()
        prev = self._strokes
        if (
            prev is not None
            and self._bgd is not None
            and len(strokes) == len(prev) + 1
            and strokes[:-1] == prev
        ):
            self._add_stroke(strokes[-1])
        else:
            self._recompute(strokes)
        self._strokes = strokes
        self._remember()
        return self._mask.copy()

    # ---- set-up ------------------------------------------------------------------------------------------

    def _base_labels(self, prior: np.ndarray | None) -> np.ndarray:
        """GC labels before any stroke: all probable background, or the prior's probable/definite labels."""
        h, w = self._work.shape[:2]
        if prior is None:
            return np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        prior = np.asarray(prior)
        if prior.shape != self.shape:
            raise ValueError(f"prior shape {prior.shape} does not match image {self.shape}")
        p = prior.astype(np.float32)
        if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
            raise ValueError("prior must hold probabilities in [0, 1]")
        if self._scale < 1.0:
            p = cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA)
        fg = p >= 0.5
        sure = (p > self.prior_high) | (p < self.prior_low)
        binary = not ((prior > self.prior_low) & (prior < self.prior_high)).any()
        if binary:
            # A mask carries no confidence (e.g. the previous frame's, where the hand has since moved): the
            # band of `band` pixels around its contour is open, the rest definite.
            contour = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            seeds, margin = contour.astype(bool), self.band
        else:
            # A probability map: its uncertain pixels (and 2 pixels around them) are open.
            seeds, margin = ~sure, 2
        if seeds.any():
            dist = cv2.distanceTransform((~seeds).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        else:
            dist = np.full((h, w), np.inf, np.float32)
        labels = np.where(fg, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        far = sure & (dist > margin)
        labels[far & fg] = cv2.GC_FGD
        labels[far & ~fg] = cv2.GC_BGD
        return labels

    def _work_stroke(self, s: Stroke) -> Stroke:
        if self._scale == 1.0:
            return s
        k = self._scale
        pts = tuple(((x + 0.5) * k - 0.5, (y + 0.5) * k - 0.5) for x, y in s.points)
        return Stroke(s.label, max(1.0, s.radius * k), pts)

    # ---- the two update paths ----------------------------------------------------------------------------

    def _recompute(self, strokes: tuple[Stroke, ...]) -> None:
        """From the base labels with every stroke: colour models from scratch, cut everything open."""
        labels = self._base.copy()
        for s in strokes:
            self._open_near(labels, s)
        work_hard = hard_labels([self._work_stroke(s) for s in strokes], labels.shape)
        labels[work_hard == FOREGROUND] = cv2.GC_FGD
        labels[work_hard == BACKGROUND] = cv2.GC_BGD
        self._hard = hard_labels(list(strokes), self.shape)
        self._bgd = self._fgd = self._c_labels = None
        open_ = (labels == cv2.GC_PR_BGD) | (labels == cv2.GC_PR_FGD)
        fg_count = np.count_nonzero(labels & 1)
        bg_count = labels.size - fg_count
        if fg_count < _MIN_SAMPLES or bg_count < _MIN_SAMPLES:
            # No hand seeds (e.g. only background strokes) -> background; no background seeds -> hand.
            labels[open_] = cv2.GC_PR_BGD if fg_count < _MIN_SAMPLES else cv2.GC_PR_FGD
        elif open_.any():
            if not self._has_prior:
                self._grow(labels, labels == cv2.GC_FGD, FOREGROUND)
            self._segment(labels, open_, fresh=True)
        self._labels = labels
        self._finish_full()

    def _add_stroke(self, stroke: Stroke) -> None:
        """One stroke more: keep the models; re-cut coarsely everywhere, finely only where it matters."""
        labels = self._labels.copy()
        if self._has_prior:
            # Re-open the prior's definite pixels near the stroke, but never an earlier stroke's hard label.
            earlier = hard_labels([self._work_stroke(s) for s in self._strokes], labels.shape) >= 0
            before = labels.copy()
            self._open_near(labels, stroke)
            labels[earlier] = before[earlier]
        footprint = np.zeros(labels.shape, np.uint8)
        draw_stroke(footprint, self._work_stroke(stroke), 1)
        on = footprint.astype(bool)
        labels[on] = cv2.GC_FGD if stroke.label == FOREGROUND else cv2.GC_BGD
        full_fp = np.zeros(self.shape, np.uint8)
        draw_stroke(full_fp, stroke, 1)
        self._hard[full_fp.astype(bool)] = stroke.label
        if not on.any():  # stroke outside the image: nothing changes
            self._labels = labels
            return
        m = 2 * self.roi_margin + 1
        focus = cv2.dilate(footprint, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (m, m))).astype(bool)
        # No growing here: once the models exist, a grown start proved to let a hand stroke on a background of
        # similar colour flip large areas; the kept models and the coarse cut spread the correction instead.
        roi = self._segment(labels, focus, fresh=False)
        self._labels = labels
        if roi is not None:
            self._finish_region(roi)
        ys, xs = np.nonzero(on)
        self._finish_region((int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1))

    def _open_near(self, labels: np.ndarray, stroke: Stroke) -> None:
        """With a prior: definite pixels within `open_radius` of the stroke become probable again, so the
        correction can spread over the prior's confident but wrong region."""
        if not self._has_prior:
            return
        s = self._work_stroke(stroke)
        near = np.zeros(labels.shape, np.uint8)
        draw_stroke(near, Stroke(s.label, s.radius + self.open_radius, s.points), 1)
        near = near.astype(bool) & (labels < cv2.GC_PR_BGD)
        labels[near] += 2  # GC_BGD -> GC_PR_BGD, GC_FGD -> GC_PR_FGD

    def _grow(self, labels: np.ndarray, seeds: np.ndarray, label: int) -> np.ndarray:
        """Open pixels of the other class that look like the stroked pixels `seeds` (squared Mahalanobis
        distance in Lab below `grow`) and connect to them start as probable `label`; returns them.

        Why: a colour model learned from a few stroked pixels alone is too narrow to claim the rest of the
        region they lie in, so GrabCut would otherwise return little more than the stroke. These starting
        labels only feed the learning of the colour models; the graph cut still decides every open pixel."""
        if self.grow <= 0 or np.count_nonzero(seeds) < 2:
            return np.zeros(labels.shape, bool)
        if self._lab is None:
            self._lab = cv2.cvtColor(self._work, cv2.COLOR_RGB2LAB).astype(np.float32)
        samples = self._lab[seeds]
        mean = samples.mean(axis=0)
        cov = np.cov(samples, rowvar=False) + np.eye(3) * 4.0  # floor: a flat patch still has some spread
        diff = (self._lab - mean).reshape(-1, 3)
        d2 = np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov).astype(np.float32), diff).reshape(seeds.shape)
        other = cv2.GC_PR_BGD if label == FOREGROUND else cv2.GC_PR_FGD
        similar = ((d2 < self.grow) & (labels == other)) | seeds
        n, comp = cv2.connectedComponents(similar.astype(np.uint8), connectivity=8)
        keep = np.zeros(n, bool)
        keep[np.unique(comp[seeds])] = True
        keep[0] = False
        grown = keep[comp] & (labels == other)
        labels[grown] = other + 1 if label == FOREGROUND else other - 1
        return grown

    # ---- GrabCut steps -----------------------------------------------------------------------------------

    def _segment(self, labels: np.ndarray, focus: np.ndarray, fresh: bool) -> tuple[int, int, int, int] | None:
        """Update `labels` in place; return the working-resolution box that changed (None: nothing).

        1. Coarse: GrabCut iterations (learn colour models, cut) over the whole image subsampled by
           `coarse_stride`, continuing from the kept models and the kept coarse labels (fresh: from `labels`).
           Cheap and global: comparing its result with the previous coarse result shows where the mask moves.
        2. Fine: one cut at working resolution with the models frozen, on the pixels that changed coarsely or
           lie in `focus` (near the new stroke), grown by a few pixels; the rest of its bounding box is pinned
           to the current labels so the cut joins the mask seamlessly.
        """
        h, w = labels.shape
        S = s = self._coarse_stride
        sub = labels[::S, ::S]
        if fresh or self._c_labels is None:
            c_lab = np.ascontiguousarray(sub)
        else:
            # The previous coarse result, with the current definite labels (strokes, prior) and the pixels a
            # stroke re-opened taken from the working labels.
            c_lab = self._c_labels.copy()
            take = (sub < cv2.GC_PR_BGD) | (c_lab < cv2.GC_PR_BGD)
            c_lab[take] = sub[take]
        fg = np.count_nonzero(c_lab & 1)
        if s > 1 and (fg < _MIN_SAMPLES or c_lab.size - fg < _MIN_SAMPLES):
            s, c_lab = 1, labels.copy()  # a class lost to subsampling: do it all at working resolution
        fg = np.count_nonzero(c_lab & 1)
        if fg < _MIN_SAMPLES or c_lab.size - fg < _MIN_SAMPLES:
            # One class (nearly) absent: GrabCut cannot model it; every open pixel takes the other class.
            open_ = (labels == cv2.GC_PR_BGD) | (labels == cv2.GC_PR_FGD)
            labels[open_] = cv2.GC_PR_BGD if fg < _MIN_SAMPLES else cv2.GC_PR_FGD
            self._c_labels = labels[::S, ::S].copy()
            return 0, h, 0, w
        before = c_lab & 1
        c_img = self._work if s == 1 else self._coarse
        cv2.setRNGSeed(self.seed)
        if self._bgd is None:
            self._bgd = np.zeros((1, _MODEL_SIZE), np.float64)
            self._fgd = np.zeros((1, _MODEL_SIZE), np.float64)
            mode = cv2.GC_INIT_WITH_MASK
        else:
            mode = cv2.GC_EVAL
        _, self._bgd, self._fgd = cv2.grabCut(c_img, c_lab, None, self._bgd, self._fgd, self.iterations, mode)
        if s == 1:
            changed = (c_lab & 1) != before
            labels[:] = c_lab
            self._c_labels = labels[::S, ::S].copy()
            if not changed.any():
                return None
            ys, xs = np.nonzero(changed)
            return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        self._c_labels = c_lab
        changed = ((c_lab & 1) != before).astype(np.uint8)
        changed = np.repeat(np.repeat(changed, s, axis=0), s, axis=1)[:h, :w]
        grow = 2 * s + 1
        region = cv2.dilate(changed, np.ones((grow, grow), np.uint8)).astype(bool) | focus
        region &= (labels == cv2.GC_PR_BGD) | (labels == cv2.GC_PR_FGD)
        if not region.any():
            return None
        ys, xs = np.nonzero(region)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        crop = labels[y0:y1, x0:x1].copy()
        inside = region[y0:y1, x0:x1]
        crop[~inside] &= 1  # pin: PR_BGD -> BGD, PR_FGD -> FGD
        img = np.ascontiguousarray(self._work[y0:y1, x0:x1])
        cv2.grabCut(img, crop, None, self._bgd.copy(), self._fgd.copy(), 1, cv2.GC_EVAL_FREEZE_MODEL)
        labels[y0:y1, x0:x1][inside] = crop[inside]
        return y0, y1, x0, x1

    # ---- back to full resolution -------------------------------------------------------------------------

    def _finish_full(self) -> None:
        h, w = self._labels.shape
        self._mask = np.zeros(self.shape, np.uint8)
        self._finish_region((0, h, 0, w))

    def _finish_region(self, roi: tuple[int, int, int, int]) -> None:
        """Bring the working labels inside `roi` back to full resolution and re-apply hard labels there."""
        y0, y1, x0, x1 = roi
        fg = (self._labels & 1).astype(np.uint8)
        if self._scale == 1.0:
            Y0, Y1, X0, X1 = y0, y1, x0, x1
            out = fg[y0:y1, x0:x1]
        else:
            # Fast guided filter (He & Sun 2015): the linear coefficients come from the working-resolution
            # guide and labels, are upsampled, and applied to the full-resolution guide, so the boundary
            # follows the full-resolution image edges at the cost of two interpolations.
            H, W = self.shape
            k = self._scale
            h, w = fg.shape
            Y0, Y1 = max(0, int(y0 / k) - 2), min(H, int(np.ceil(y1 / k)) + 2)
            X0, X1 = max(0, int(x0 / k) - 2), min(W, int(np.ceil(x1 / k)) + 2)
            pad = 4
            c0, c1 = max(0, y0 - pad), min(h, y1 + pad)
            d0, d1 = max(0, x0 - pad), min(w, x1 + pad)
            a, b = guided_coefficients(self._guide_work[c0:c1, d0:d1], fg[c0:c1, d0:d1].astype(np.float32), 1, 1e-2)
            # Inverse map: full-res pixel (X, Y) of the region -> working pixel relative to the crop.
            m = np.float32([[k, 0, (X0 + 0.5) * k - 0.5 - d0], [0, k, (Y0 + 0.5) * k - 0.5 - c0]])
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            size = (X1 - X0, Y1 - Y0)
            a = cv2.warpAffine(a, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
            b = cv2.warpAffine(b, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
            out = (a * self._guide[Y0:Y1, X0:X1] + b > 0.5).astype(np.uint8)
        hard = self._hard[Y0:Y1, X0:X1]
        out = np.where(hard >= 0, hard, out).astype(np.uint8)
        self._mask[Y0:Y1, X0:X1] = out

    # ---- undo/redo cache ---------------------------------------------------------------------------------

    def _remember(self) -> None:
        self._cache[self._strokes] = _State(
            self._labels.copy(),
            None if self._c_labels is None else self._c_labels.copy(),
            None if self._bgd is None else self._bgd.copy(),
            None if self._fgd is None else self._fgd.copy(),
            np.packbits(self._mask),
            np.packbits(self._hard == FOREGROUND),
            np.packbits(self._hard == BACKGROUND),
        )
        self._cache.move_to_end(self._strokes)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _restore(self, strokes: tuple[Stroke, ...], st: _State) -> None:
        n = self.shape[0] * self.shape[1]
        self._strokes = strokes
        self._labels = st.labels.copy()
        self._c_labels = None if st.c_labels is None else st.c_labels.copy()
        self._bgd = None if st.bgd is None else st.bgd.copy()
        self._fgd = None if st.fgd is None else st.fgd.copy()
        self._mask = np.unpackbits(st.mask_bits, count=n).reshape(self.shape)
        hard = np.full(n, -1, np.int8)
        hard[np.unpackbits(st.hard_fg_bits, count=n).astype(bool)] = FOREGROUND
        hard[np.unpackbits(st.hard_bg_bits, count=n).astype(bool)] = BACKGROUND
        self._hard = hard.reshape(self.shape)


def guided_coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """He et al.'s guided filter with a grey guide, as the smoothed linear coefficients (a, b): the filtered
    output is a * guide + b (float32 arrays of one shape)."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a), box(b)


def iou(mask: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two binary masks (1.0 when both are empty)."""
    m, g = mask.astype(bool), gt.astype(bool)
    union = np.count_nonzero(m | g)
    return 1.0 if union == 0 else np.count_nonzero(m & g) / union
