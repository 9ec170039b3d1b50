"""Drawing synthetic keyboard scenes and hands, frame by frame, with exact masks (kbh.synth)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from ..errors import KbhError
from .attributes import _LIGHTING, _SKIN_ANCHORS, person_attributes, sequence_attributes

# ---------------------------------------------------------------------------------------------------------------
# Small drawing helpers. Coordinates are float pixels; cv2 gets them in 1/8 pixel (shift=3).

_SHIFT = 3
_SCALE = 1 << _SHIFT


def _pt(p) -> tuple[int, int]:
    return int(round(p[0] * _SCALE)), int(round(p[1] * _SCALE))


def _poly(img, pts, value) -> None:
    arr = np.round(np.asarray(pts, np.float64) * _SCALE).astype(np.int32)
    cv2.fillPoly(img, [arr], value, cv2.LINE_8, _SHIFT)


def _capsule(img, p, q, width, value) -> None:
    # cv2 draws thick lines with round caps: a capsule.
    cv2.line(img, _pt(p), _pt(q), value, max(1, int(round(width))), cv2.LINE_8, _SHIFT)


def _ellipse(img, c, axes, angle_deg, value) -> None:
    cv2.ellipse(img, _pt(c), (max(1, int(round(axes[0] * _SCALE))), max(1, int(round(axes[1] * _SCALE)))),
                float(angle_deg), 0, 360, value, -1, cv2.LINE_8, _SHIFT)


def _smooth_noise(rng, h, w, cells, amplitude) -> np.ndarray:
    """Low-frequency noise in [-amplitude, amplitude], float32 (h, w)."""
    gh, gw = max(2, h // cells), max(2, w // cells)
    small = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * amplitude


def _rot(v, angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


class _Wave:
    """A smooth bounded random signal: base + a sum of sinusoids with random periods (in frames) and phases."""

    def __init__(self, rng, base, amplitude, periods=(40, 160), n=3):
        self.base = float(base)
        self.omega = 2 * np.pi / rng.uniform(*periods, n)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        a = rng.uniform(0.3, 1.0, n)
        self.amp = amplitude * a / a.sum()

    def __call__(self, t: float) -> float:
        return self.base + float(np.dot(self.amp, np.sin(self.omega * t + self.phase)))


# ---------------------------------------------------------------------------------------------------------------
# The static background: desk, keyboard, objects. Rendered at 2x, downsampled once per sequence.

def _desk(rng, h, w, kind) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind.endswith("wood"):
        base = np.array([186, 136, 92] if kind == "light_wood" else [104, 68, 44], np.float32)
        base *= rng.uniform(0.9, 1.1, 3).astype(np.float32)
        angle = rng.uniform(-0.15, 0.15)
        along = yy * np.cos(angle) + xx * np.sin(angle)
        warp = _smooth_noise(rng, h, w, 40, 14.0) + _smooth_noise(rng, h, w, 8, 2.0)
        period = rng.uniform(7, 14) * h / 460
        grain = np.sin(2 * np.pi * (along + warp) / period)
        rings = np.sin(2 * np.pi * (along + 3 * warp) / (period * 5.3))
        tone = 1 + 0.06 * grain + 0.05 * rings + _smooth_noise(rng, h, w, 60, 0.06)
    else:
        base = {"white": [226, 224, 218], "grey": [128, 130, 134], "black": [42, 42, 45]}[kind]
        base = np.array(base, np.float32) * rng.uniform(0.94, 1.06, 3).astype(np.float32)
        tone = 1 + _smooth_noise(rng, h, w, 50, 0.05) + _smooth_noise(rng, h, w, 3, 0.02)
    return base[None, None, :] * tone[:, :, None]


# Row layouts of a keyboard's main block in key units (0 = a gap of that width is given as negative).
_ROWS = [
    [1, -1, 1, 1, 1, 1, -0.5, 1, 1, 1, 1, -0.5, 1, 1, 1, 1],
    [1] * 13 + [2],
    [1.5] + [1] * 12 + [1.5],
    [1.75] + [1] * 11 + [2.25],
    [2.25] + [1] * 10 + [2.75],
    [1.25, 1.25, 1.25, 6.25, 1.25, 1.25, 1.25, 1.25],
]
_LEGENDS = "QWERTYUIOPASDFGHJKLZXCVBNM1234567890"


def _keyboard(rng, kind, unit, numpad) -> tuple[np.ndarray, np.ndarray]:
    """The keyboard seen straight from above: RGB float32 and alpha, in its own canvas."""
    margin = 0.45 * unit
    width_units = 15 + (4.5 if numpad else 0)
    height_units = 6.25  # function row, a small gap, five rows
    w = int(round(width_units * unit + 2 * margin))
    h = int(round(height_units * unit + 2 * margin))
    if kind == "dark":
        body = np.array([34, 34, 37]) * rng.uniform(0.8, 1.3)
        cap = np.array([48, 48, 52]) * rng.uniform(0.8, 1.3)
        legend = (200, 200, 200)
    else:
        body = np.array([205, 205, 200]) * rng.uniform(0.85, 1.05)
        cap = np.array([236, 236, 232]) * rng.uniform(0.9, 1.05)
        legend = (70, 70, 75)
    img = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    r = int(0.5 * unit)
    # Rounded body: two rectangles and four circles.
    for a in (img, alpha):
        v = tuple(float(x) for x in body) if a is img else 1.0
        cv2.rectangle(a, (r, 0), (w - 1 - r, h - 1), v, -1)
        cv2.rectangle(a, (0, r), (w - 1, h - 1 - r), v, -1)
        for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
            cv2.circle(a, (cx, cy), r, v, -1, cv2.LINE_AA)
    glyphs = np.zeros((h, w), np.uint8)  # key legends (cv2.putText draws on 8-bit images only)
    gap = 0.07 * unit
    font_scale = unit / 70.0

    def key(x0, y0, kw, kh):
        x1, y1 = x0 + kw - gap, y0 + kh - gap
        x0, y0 = x0 + gap, y0 + gap
        side = cap * 0.72
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), tuple(float(c) for c in side), -1, cv2.LINE_AA)
        tx0, ty0, tx1, ty1 = x0 + 0.1 * unit, y0 + 0.06 * unit, x1 - 0.1 * unit, y1 - 0.2 * unit
        top = cap * rng.uniform(0.97, 1.03)
        cv2.rectangle(img, (int(tx0), int(ty0)), (int(tx1), int(ty1)), tuple(float(c) for c in top), -1, cv2.LINE_AA)
        if kw <= 1.3 * unit and rng.random() < 0.9:
            ch = _LEGENDS[rng.integers(len(_LEGENDS))]
            cv2.putText(glyphs, ch, (int(tx0 + 0.12 * unit), int(ty0 + 0.42 * unit)), cv2.FONT_HERSHEY_SIMPLEX,
                        font_scale, 255, max(1, int(unit / 28)), cv2.LINE_AA)

    y = margin
    for i, row in enumerate(_ROWS):
        kh = unit * (0.8 if i == 0 else 1.0)
        x = margin
        for kw in row:
            if kw > 0:
                key(x, y, kw * unit, kh)
            x += abs(kw) * unit
        if numpad:
            x = margin + 15.5 * unit
            for _ in range(4):
                if i > 0 or rng.random() < 0.5:
                    key(x, y, unit, kh)
                x += unit
        y += kh + (0.45 * unit if i == 0 else 0.0)
    g = (glyphs.astype(np.float32) / 255.0)[:, :, None]
    img = img * (1 - g) + np.float32(legend) * g
    # Keys nearer the camera show more of their front side: a gentle top-to-bottom shading.
    img *= np.linspace(1.06, 0.92, h, dtype=np.float32)[:, None, None]
    return img, alpha


def _paste(bg, layer, alpha, dst_quad, shadow_offset, shadow_strength, blur):
    """Warp `layer` (with `alpha`) onto `bg` so its corners land on `dst_quad`; cast a soft shadow."""
    h, w = layer.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(src, np.float32(dst_quad))
    size = (bg.shape[1], bg.shape[0])
    a = cv2.warpPerspective(alpha, m, size, flags=cv2.INTER_LINEAR)
    if shadow_strength > 0:
        sh = np.zeros_like(a)
        dx, dy = int(shadow_offset[0]), int(shadow_offset[1])
        sh[max(dy, 0):, max(dx, 0):] = a[: a.shape[0] - max(dy, 0), : a.shape[1] - max(dx, 0)]
        sh = cv2.GaussianBlur(sh, (0, 0), blur)
        bg *= (1 - shadow_strength * sh)[:, :, None]
    lw = cv2.warpPerspective(layer, m, size, flags=cv2.INTER_LINEAR)
    bg *= (1 - a)[:, :, None]
    bg += lw
    return a


def _objects(rng, bg, keep_out, count):
    """Draw `count` desk objects on the 2x background, away from the keyboard's box `keep_out`."""
    h, w = bg.shape[:2]
    kx0, ky0, kx1, ky1 = keep_out
    s = w / 612.0
    for _ in range(count):
        kind = rng.choice(["mug", "phone", "paper", "pen", "note"])
        size = {"mug": 44, "phone": 70, "paper": 150, "pen": 80, "note": 40}[kind] * s * rng.uniform(0.8, 1.2)
        for _try in range(30):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            if not (kx0 - size * 0.6 < cx < kx1 + size * 0.6 and ky0 - size * 0.6 < cy < ky1 + size * 0.6):
                break
        else:
            continue
        angle = rng.uniform(0, 180)
        layer = np.zeros_like(bg)
        alpha = np.zeros(bg.shape[:2], np.float32)
        col = lambda c: tuple(float(x) for x in c)  # noqa: E731
        if kind == "mug":
            # Hard negatives included: beige and brown mugs.
            body = rng.choice([[230, 228, 222], [200, 40, 40], [40, 70, 150], [210, 170, 130], [120, 80, 55]])
            body = np.array(body, np.float32) * rng.uniform(0.85, 1.1)
            r = size
            handle_dir = _rot((1.0, 0.0), np.radians(angle))
            for a, v in ((layer, col(body * 0.85)), (alpha, 1.0)):
                _capsule(a, (cx, cy), (cx + handle_dir[0] * r * 1.25, cy + handle_dir[1] * r * 1.25), r * 0.35, v)
                cv2.circle(a, _pt((cx, cy)), int(r * _SCALE), v, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(layer, _pt((cx, cy)), int(r * _SCALE), col(body), -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(layer, _pt((cx, cy)), int(r * 0.82 * _SCALE), col(body * 0.8), -1, cv2.LINE_AA, _SHIFT)
            drink = np.array([[60, 35, 20], [20, 12, 8], [170, 120, 70]][rng.integers(3)], np.float32)
            cv2.circle(layer, _pt((cx, cy)), int(r * 0.72 * _SCALE), col(drink), -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(layer, _pt((cx - r * 0.2, cy - r * 0.25)), int(r * 0.15 * _SCALE), col(drink * 1.6 + 40),
                       -1, cv2.LINE_AA, _SHIFT)
        else:
            dims = {"phone": (0.5, 1.0), "paper": (0.71, 1.0), "pen": (0.07, 1.0), "note": (1.0, 1.0)}[kind]
            hw, hh = dims[0] * size / 2, dims[1] * size / 2
            ax, ay = _rot((1, 0), np.radians(angle)), _rot((0, 1), np.radians(angle))
            c = np.array([cx, cy])
            quad = [c - ax * hw - ay * hh, c + ax * hw - ay * hh, c + ax * hw + ay * hh, c - ax * hw + ay * hh]
            colour = {
                "phone": rng.choice([[25, 25, 28], [210, 210, 215], [60, 60, 70]]),
                "paper": [238, 236, 228],
                "pen": rng.choice([[30, 40, 140], [20, 20, 20], [180, 30, 30], [230, 230, 230]]),
                "note": rng.choice([[245, 230, 110], [250, 170, 190], [160, 230, 160]]),
            }[kind]
            colour = np.array(colour, np.float32) * rng.uniform(0.9, 1.05)
            if kind == "pen":
                for a, v in ((layer, col(colour)), (alpha, 1.0)):
                    _capsule(a, quad[0] / 2 + quad[1] / 2, quad[2] / 2 + quad[3] / 2, 2 * hw, v)
            else:
                for a, v in ((layer, col(colour)), (alpha, 1.0)):
                    cv2.fillPoly(a, [np.round(np.array(quad) * _SCALE).astype(np.int32)], v, cv2.LINE_AA, _SHIFT)
            if kind == "phone":
                inset = [c + (p - c) * 0.86 for p in quad]
                screen = np.array([30, 34, 44], np.float32) + rng.uniform(0, 40)
                cv2.fillPoly(layer, [np.round(np.array(inset) * _SCALE).astype(np.int32)], col(screen),
                             cv2.LINE_AA, _SHIFT)
            elif kind == "paper":
                for k in range(int(rng.integers(6, 14))):
                    t = -0.8 + 1.6 * k / 14
                    start = c - ax * hw * 0.8 + ay * hh * t
                    length = rng.uniform(0.4, 1.6) * hw
                    cv2.line(layer, _pt(start), _pt(start + ax * length), (120, 120, 125), max(1, int(2 * s)),
                             cv2.LINE_AA, _SHIFT)
        # Objects cast a soft shadow down-right and cover the desk.
        sh = cv2.GaussianBlur(np.roll(alpha, (int(6 * s), int(6 * s)), axis=(0, 1)), (0, 0), 6 * s)
        bg *= (1 - 0.35 * sh)[:, :, None]
        bg *= (1 - alpha)[:, :, None]
        bg += layer  # drawn with anti-aliasing onto black: already premultiplied


@dataclass
class _Layout:
    background: np.ndarray  # float32 (H, W, 3), the static scene before lighting
    gain: np.ndarray  # float32 (H, W, 3), lighting: brightness, colour cast, gradient, vignette
    keyboard_center: tuple[float, float]
    keyboard_width: float
    home_row_y: float


def _scene(rng, h, w, seq) -> _Layout:
    h2, w2 = 2 * h, 2 * w
    bg = _desk(rng, h2, w2, seq.get("desk", "light_wood"))
    numpad = rng.random() < 0.45
    kb_width = w2 * rng.uniform(0.78, 0.95) * (1.0 if numpad else 0.88)
    unit = kb_width / (15 + (4.5 if numpad else 0) + 0.9)
    kb, kb_alpha = _keyboard(rng, seq.get("keyboard", "dark"), unit, numpad)
    kh, kw = kb.shape[:2]
    shift = {"center": 0.0, "left": -0.1, "right": 0.1}.get(seq.get("desk_position", "center"), 0.0)
    cx = w2 * (0.5 + shift + rng.uniform(-0.03, 0.03))
    top = h2 * rng.uniform(0.08, 0.2)
    taper = rng.uniform(0.0, 0.07)  # the far edge is narrower: the camera looks down at an angle
    rot = np.radians(rng.uniform(-4, 4))
    squash = rng.uniform(0.85, 1.0)
    hw_, hh_ = kw / 2, kh * squash / 2
    cy = top + hh_
    corners = [(-hw_ * (1 - taper), -hh_), (hw_ * (1 - taper), -hh_), (hw_, hh_), (-hw_, hh_)]
    quad = [np.array([cx, cy]) + _rot(c, rot) for c in corners]
    _paste(bg, kb, kb_alpha, quad, (0, 0.12 * unit), 0.45, 0.15 * unit)
    if seq.get("objects_on_desk") == "yes":
        xs, ys = [q[0] for q in quad], [q[1] for q in quad]
        _objects(rng, bg, (min(xs), min(ys), max(xs), max(ys)), int(rng.integers(1, 4)))
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_AREA)

    bright, cast = _LIGHTING.get(seq.get("lighting", "bright"), _LIGHTING["bright"])
    cast = np.array(cast, np.float32) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = rng.uniform(0, 2 * np.pi)
    ramp = ((xx / w - 0.5) * np.cos(d) + (yy / h - 0.5) * np.sin(d))
    vignette = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2)
    field = bright * rng.uniform(0.92, 1.08) * (1 + rng.uniform(0.15, 0.5) * ramp - rng.uniform(0.1, 0.4) * vignette)
    gain = field[:, :, None] * cast[None, None, :]
    # Home row: 3.5 rows below the keyboard's top edge (in output pixels).
    home = (top + (0.45 + 0.45 + 0.8 + 2.5) * unit * squash) / 2
    return _Layout(bg.astype(np.float32), gain.astype(np.float32), (cx / 2, cy / 2), kb_width / 2, home)


# ---------------------------------------------------------------------------------------------------------------
# Hands

# Fingers (index, middle, ring, little): base across the knuckle line, length, width, rest angle (degrees,
# positive = towards the little finger), all in palm widths.
_FINGERS = [(-0.37, 0.84, 0.205, -7.0), (-0.12, 0.94, 0.21, -2.0), (0.13, 0.88, 0.2, 3.0), (0.36, 0.68, 0.175, 9.0)]
_PHALANGES = (0.46, 0.30, 0.24)
_NAIL_COLOURS = [[190, 20, 40], [120, 10, 30], [230, 110, 150], [25, 25, 30], [40, 60, 160], [200, 80, 40]]
_METALS = [[212, 175, 55], [192, 192, 198], [225, 190, 160]]

# Accessory label ids (mask 0). Hand part ids: 1 forearm, 2 palm, 3 thumb, 4.. fingers (mask 1).
_ACC_STRAP, _ACC_BEZEL, _ACC_DIAL, _ACC_BRACELET, _ACC_RING, _ACC_SLEEVE, _ACC_FOLD = 1, 2, 3, 4, 5, 6, 7


class _Hand:
    def __init__(self, rng, side, w, h, layout, palm_width, accessories):
        self.side = side  # +1 right hand, -1 left hand (mirrors the lateral axis)
        self.W = palm_width
        k = rng.uniform(0.92, 1.08)  # finger length relative to palm
        self.fingers = [(b, ln * k, wd * rng.uniform(0.95, 1.05), a) for b, ln, wd, a in _FINGERS]
        cx, _ = layout.keyboard_center
        offset = side * layout.keyboard_width * rng.uniform(0.2, 0.28)
        reach = self.W * (0.95 + 0.75)  # wrist to the middle finger's tip when typing
        wrist_y = min(layout.home_row_y + reach, h * 0.9)
        self.x = _Wave(rng, cx + offset, w * 0.08)
        self.y = _Wave(rng, wrist_y, h * 0.08)
        self.angle = _Wave(rng, side * rng.uniform(-22, -4), 14)  # wrist turned inwards
        self.bend = _Wave(rng, -side * rng.uniform(5, 20), 10)  # elbows out: the forearm comes from outside
        self.spread = _Wave(rng, 1.0, 0.35, (20, 90))
        self.flex = [[_Wave(rng, base, amp, (10, 45)) for base, amp in ((28, 22), (40, 25), (18, 12))]
                     for _ in range(4)]
        self.thumb_angle = _Wave(rng, rng.uniform(-55, -35), 12, (20, 80))
        self.thumb_flex = _Wave(rng, 20, 15, (15, 60))
        self.accessories = accessories  # names, see below
        self.watch_at = rng.uniform(-0.55, -0.3)  # along the forearm from the wrist, palm widths
        self.bracelet_at = rng.uniform(-0.35, -0.15) if "watch" not in accessories else rng.uniform(-0.95, -0.75)
        self.ring_fingers = sorted(rng.choice(4, size=int(rng.integers(1, 3)), replace=False))
        self.sleeve_at = rng.uniform(-3.2, -1.5)
        self.tattoo = (rng.uniform(-0.2, 0.2), rng.uniform(-2.4, -1.1), rng.uniform(0, 180))
        self.tattoo_kind = int(rng.integers(3))  # a symbol, a band around the arm (like a bracelet, but skin), a star

    def draw(self, t, x, parts, acc, nails, ink):
        """Draw frame t with the wrist at column x: hand parts into `parts` (ids 1..), accessories into `acc`,
        nails into `nails`, tattoo into `ink`; all maps are uint8 (H, W)."""
        W, side = self.W, self.side
        wrist = np.array([x, self.y(t)])
        theta = np.radians(self.angle(t))
        fwd = np.array([np.sin(theta), -np.cos(theta)])  # towards the fingers
        lat = np.array([np.cos(theta), np.sin(theta)]) * side  # towards the little finger

        def at(u, v):
            return wrist + (u * lat + v * fwd) * W

        # Forearm: a trapezoid from the wrist to far beyond the bottom edge, bent at the wrist.
        arm_dir = _rot(-fwd, np.radians(self.bend(t)))
        arm_lat = np.array([-arm_dir[1], arm_dir[0]])
        def on_arm(d, half):  # noqa: E306
            return wrist + arm_dir * d * W, arm_lat * half * W
        start = wrist + fwd * 0.15 * W
        end, end_half = on_arm(7.0, 0.62)
        _poly(parts, [start - arm_lat * 0.4 * W, start + arm_lat * 0.4 * W, end + end_half, end - end_half], 1)
        # Palm: a boxy superellipse, narrower at the wrist.
        s = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        cu, sv = np.cos(s), np.sin(s)
        u = np.sign(cu) * np.abs(cu) ** 0.6 * 0.5
        v = np.sign(sv) * np.abs(sv) ** 0.7 * 0.5
        u = u * (0.84 + 0.16 * (v + 0.5))
        _poly(parts, [at(a, 0.48 + b) for a, b in zip(u, v)], 2)
        # Thumb: two segments from the palm's side, pointing forwards and inwards.
        ta = np.radians(self.thumb_angle(t))
        tf = np.radians(self.thumb_flex(t))
        p = at(-0.4, 0.22)
        d = _rot(fwd, ta * side)
        for length, width in ((0.42, 0.29), (0.33, 0.25)):
            q = p + d * length * W * max(np.cos(tf), 0.3)
            _capsule(parts, p, q, width * W, 3)
            p = q
            d = _rot(d, -0.25 * side)
        # Fingers: three segments each; a flexed segment is foreshortened in this top view.
        spread = self.spread(t)
        for i, (base, length, width, rest) in enumerate(self.fingers):
            p = at(base, 0.92)
            d = _rot(fwd, np.radians(rest * spread) * side)
            psi = 0.0
            wd = width * W
            for j, ph in enumerate(_PHALANGES):
                psi += np.radians(self.flex[i][j](t))
                q = p + d * ph * length * W * max(np.cos(psi), 0.18)
                _capsule(parts, p, q, wd, 4 + i)
                if j == 0 and "rings" in self.accessories and i in self.ring_fingers:
                    c = p + (q - p) * 0.55
                    n = np.array([-d[1], d[0]]) * (wd / 2 + 0.6)
                    _capsule(acc, c - n, c + n, max(2.0, 0.07 * W), _ACC_RING)
                p, prev = q, p
                wd *= 0.94
            # Nail: on the last phalanx, seen from above (shorter when the tip points down).
            nd = (p - prev) / (np.linalg.norm(p - prev) + 1e-6)
            nl = max(0.5 * np.linalg.norm(p - prev), 1.0)
            _ellipse(nails, p - nd * nl * 0.35, (nl * 0.55, wd * 0.33), np.degrees(np.arctan2(nd[1], nd[0])), 1)
        # Accessories on the forearm: watch, bracelet, sleeve (all not hand).
        arm_half = lambda dd: (0.4 + (0.62 - 0.4) * dd / 7.0) * W  # noqa: E731
        if "watch" in self.accessories:
            c = wrist + arm_dir * (-self.watch_at) * W
            half = arm_half(-self.watch_at) + 0.08 * W
            _capsule(acc, c - arm_lat * half, c + arm_lat * half, 0.34 * W, _ACC_STRAP)
            _ellipse(acc, c, (0.27 * W, 0.25 * W), 0, _ACC_BEZEL)
            _ellipse(acc, c, (0.21 * W, 0.19 * W), 0, _ACC_DIAL)
        if "bracelet" in self.accessories:
            c = wrist + arm_dir * (-self.bracelet_at) * W
            half = arm_half(-self.bracelet_at) + 0.05 * W
            _capsule(acc, c - arm_lat * half, c + arm_lat * half, max(2.0, 0.12 * W), _ACC_BRACELET)
        if "tattoo" in self.accessories:
            tu, tv, ang = self.tattoo
            c = wrist + arm_dir * (-tv) * W + arm_lat * tu * W
            if self.tattoo_kind == 0:
                _ellipse(ink, c, (0.22 * W, 0.12 * W), ang, 1)
                _ellipse(ink, c, (0.14 * W, 0.06 * W), ang, 0)
                _capsule(ink, c - arm_dir * 0.3 * W, c + arm_dir * 0.3 * W, max(1.0, 0.05 * W), 1)
            elif self.tattoo_kind == 1:
                c = wrist + arm_dir * (-tv) * W
                half = arm_half(-tv)
                for k in (-1, 1):
                    o = arm_dir * k * 0.07 * W
                    _capsule(ink, c + o - arm_lat * half, c + o + arm_lat * half, max(1.0, 0.05 * W), 1)
            else:
                a = np.radians(ang) + np.arange(10) * np.pi / 5
                r = np.where(np.arange(10) % 2 == 0, 0.24, 0.1) * W
                _poly(ink, np.stack([c[0] + r * np.cos(a), c[1] + r * np.sin(a)], 1), 1)
        if "sleeve" in self.accessories:
            c0 = wrist + arm_dir * (-self.sleeve_at) * W
            h0 = arm_half(-self.sleeve_at) + 0.12 * W
            _poly(acc, [c0 - arm_lat * h0, c0 + arm_lat * h0, end + end_half * 1.3, end - end_half * 1.3], _ACC_SLEEVE)
            for f in (-0.25, 0.1, 0.3):
                c = c0 + arm_dir * (0.5 + abs(f)) * W
                _capsule(acc, c - arm_lat * h0 * 0.8, c + arm_lat * (h0 * f), max(1.0, 0.05 * W), _ACC_FOLD)


@dataclass
class _Frame:
    image: np.ndarray  # uint8 (H, W, 3) RGB
    mask: np.ndarray  # uint8 (H, W) {0, 1}
    accessories: np.ndarray  # uint8 (H, W): watch/bracelet/ring/sleeve ids, 0 elsewhere (for tests)


def _tone(rng, bucket) -> np.ndarray:
    lo = {"light": 0.0, "medium": 1 / 3, "dark": 2 / 3}.get(bucket, 1 / 3)
    x = (lo + rng.uniform(0.02, 0.31)) * (len(_SKIN_ANCHORS) - 1)
    i = min(int(x), len(_SKIN_ANCHORS) - 2)
    tone = _SKIN_ANCHORS[i] + (x - i) * (_SKIN_ANCHORS[i + 1] - _SKIN_ANCHORS[i])
    return tone * rng.uniform(0.95, 1.05, 3).astype(np.float32)


MIN_SIDE = 24  # smaller frames cannot hold a keyboard and a hand


def check_request(persons: int, sequences_per_person: int, frames: int, size) -> None:
    """The one check of what `kbh synth` and `synthesize_workspace` are asked for."""
    for name, v in (("--persons", persons), ("--sequences-per-person", sequences_per_person), ("--frames", frames)):
        if int(v) < 1:
            raise KbhError(f"synth: {name} must be >= 1, got {v}")
    _check_size(size)


def _check_size(size) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    if h < MIN_SIDE or w < MIN_SIDE:
        raise KbhError(f"synthetic frame size {h}x{w} is too small (at least {MIN_SIDE}x{MIN_SIDE})")
    return h, w


def _render(seed: int, n_frames: int, size, person_attrs, sequence_attrs) -> Iterator[_Frame]:
    h, w = _check_size(size)
    rng = np.random.default_rng(seed)
    person = person_attrs if person_attrs is not None else person_attributes(np.random.default_rng([seed, 1]))
    seq = sequence_attrs if sequence_attrs is not None else sequence_attributes(np.random.default_rng([seed, 2]))
    layout = _scene(rng, h, w, seq)

    tone = _tone(rng, person.get("skin_tone", "medium"))
    n_hands = 2 if rng.random() < 0.8 else 1
    sides = [-1, 1] if n_hands == 2 else [int(rng.choice([-1, 1]))]
    palm = w * 0.13 * rng.uniform(0.8, 1.3)
    min_gap = 2.1 * palm
    sleeve = rng.random() < 0.45
    hands = []
    for k, side in enumerate(sides):
        acc = set()
        if person.get("watch") == "yes" and (side == -1 or n_hands == 1):
            acc.add("watch")
        if person.get("bracelet") == "yes" and (side == 1 or n_hands == 1):
            acc.add("bracelet")
        if person.get("tattoo") == "yes" and k == 0:
            acc.add("tattoo")
        if person.get("rings") == "yes":
            acc.add("rings")
        if sleeve:
            acc.add("sleeve")
        hands.append(_Hand(rng, side, w, h, layout, palm, acc))

    nail = (np.array(_NAIL_COLOURS[rng.integers(len(_NAIL_COLOURS))], np.float32)
            if person.get("nail_polish") == "yes" else np.minimum(tone * np.array([1.12, 1.0, 1.02]) + 18, 255))
    lut = np.zeros((8, 3), np.float32)
    lut[_ACC_STRAP] = [[20, 20, 22], [90, 55, 30], [170, 170, 175], [30, 40, 90]][rng.integers(4)]
    lut[_ACC_BEZEL] = _METALS[rng.integers(len(_METALS))]
    lut[_ACC_DIAL] = [[15, 15, 18], [235, 235, 230], [20, 30, 70]][rng.integers(3)]
    lut[_ACC_BRACELET] = _METALS[rng.integers(len(_METALS))] if rng.random() < 0.6 else \
        [[120, 30, 30], [30, 30, 30], [60, 90, 160]][rng.integers(3)]
    lut[_ACC_RING] = _METALS[rng.integers(len(_METALS))]
    cloth = np.array([[40, 45, 70], [180, 180, 185], [25, 25, 28], [120, 40, 40], [70, 100, 70], [150, 130, 100]]
                     [rng.integers(6)], np.float32) * rng.uniform(0.85, 1.15)
    lut[_ACC_SLEEVE] = cloth
    lut[_ACC_FOLD] = cloth * 0.7
    ink = np.array([40, 55, 60], np.float32)
    skin_texture = 1 + _smooth_noise(rng, h, w, 12, 0.05)
    shadow_shift = np.float32([[1, 0, rng.uniform(-0.1, 0.25) * palm / 4], [0, 1, rng.uniform(0.05, 0.25) * palm / 4]])
    shadow_strength = rng.uniform(0.25, 0.5)
    blur = rng.uniform(0.5, 0.9)
    sigma = rng.uniform(1.5, 4.0) * (1.6 if seq.get("lighting") == "dim" else 1.0)
    lit = layout.background * layout.gain  # light applies to everything: the static part once
    gain = layout.gain
    # Sensor noise: a bank drawn once, cropped at a random offset per frame (drawing 200k normals per frame
    # would cost more than the whole rest of the frame).
    pad = 48
    bank = rng.standard_normal((h + pad, w + pad, 3), dtype=np.float32) * np.float32(sigma)
    frame_rng = np.random.default_rng([seed, 3])
    small = (max(1, w // 4), max(1, h // 4))

    parts = np.zeros((h, w), np.uint8)
    acc = np.zeros((h, w), np.uint8)
    nails = np.zeros((h, w), np.uint8)
    tattoo = np.zeros((h, w), np.uint8)
    for t in range(n_frames):
        parts[:] = 0
        acc[:] = 0
        nails[:] = 0
        tattoo[:] = 0
        xs = [hand.x(t) for hand in hands]
        if len(hands) == 2 and xs[1] - xs[0] < min_gap:  # keep the hands from crossing: push both apart
            push = (min_gap - (xs[1] - xs[0])) / 2
            xs = [xs[0] - push, xs[1] + push]
        for hand, x in zip(hands, xs):
            hand.draw(float(t), x, parts, acc, nails, tattoo)
        mask = ((parts > 0) & (acc == 0)).astype(np.uint8)
        # Soft shadow of hands, arms and accessories on the desk, computed at quarter resolution.
        cover = cv2.resize((parts | acc).astype(np.float32), small, interpolation=cv2.INTER_AREA)
        cover = cv2.GaussianBlur(cv2.warpAffine(cover, shadow_shift, small), (0, 0), 0.06 * palm)
        shadow = 1 - shadow_strength * cv2.resize(cover, (w, h))
        img = lit * shadow[:, :, None]
        # Skin: darker towards the outline (round fingers and arms), mild texture; then nails and tattoo.
        dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
        ys, xs = np.nonzero(mask)
        tex = skin_texture[ys, xs]
        colour = tone[None, :] * ((1.0 - 0.32 * np.exp(-dist[ys, xs] / (0.07 * palm))) * tex)[:, None]
        on = nails[ys, xs] > 0
        colour[on] = nail[None, :] * (0.85 + 0.15 * tex[on])[:, None]
        on = tattoo[ys, xs] > 0
        colour[on] = 0.35 * colour[on] + 0.65 * ink
        img[ys, xs] = colour * gain[ys, xs]
        ay, ax = np.nonzero(acc)
        img[ay, ax] = lut[acc[ay, ax]] * gain[ay, ax]
        img = cv2.GaussianBlur(img, (0, 0), blur)
        oy, ox = frame_rng.integers(0, pad, 2)
        noise = bank[oy:oy + h, ox:ox + w]
        if frame_rng.random() < 0.5:
            noise = -noise
        yield _Frame(cv2.add(img, noise, dtype=cv2.CV_8U), mask, acc.copy())


def render_sequence(seed: int, n_frames: int, size=(230, 306), person_attrs: dict | None = None,
                    sequence_attrs: dict | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames of one synthetic sequence: (RGB uint8 (H, W, 3), mask uint8 (H, W) {0, 1}), `size` = (H, W).

    The same arguments give identical frames. Attributes left None are drawn from the seed.
    """
    for f in _render(seed, n_frames, size, person_attrs, sequence_attrs):
        yield f.image, f.mask
