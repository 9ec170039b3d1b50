"""How someone else's mask file becomes hand (1) / background (0): the one place that defines it.

    grey or palette masks (one value per pixel, palette indices kept as they are):
        no --mask-threshold   two values: the larger is hand; one value: 0 is no hand, anything else all hand;
                              more than two values: refused (give --mask-threshold)
        --mask-threshold T    hand = value > T; refused when the mask has two or more values and T does not
                              separate them (every pixel would land on one side)
    colour masks (RGB whose channels differ somewhere):
        --mask-hand-colour    hand = pixels of exactly that colour
        otherwise             black and one colour: the colour is hand; any other set of colours is refused
                              (which colour is the hand is a guess), and so is --mask-threshold
    --mask-invert             flips the result of any of the above (for sets that mark the hand with 0)

Whatever the flags, a frame whose hand covers under COVERAGE_LOW or over COVERAGE_HIGH of it is reported, and
a set whose median coverage is over one half gets the polarity warning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import KbhError
from .imageio import DEFAULT_MAX_PIXELS, check_pixels, header_size

COVERAGE_LOW, COVERAGE_HIGH = 0.005, 0.95


@dataclass(frozen=True)
class MaskRule:
    invert: bool = False
    threshold: float | None = None
    hand_colour: tuple[int, int, int] | None = None

    def __post_init__(self):
        if self.threshold is not None and self.hand_colour is not None:
            raise KbhError("--mask-threshold is for grey masks and --mask-hand-colour for colour masks: give one")

    def apply(self, raw: np.ndarray, name: str) -> np.ndarray:
        """uint8 {0, 1}, 1 = hand, from a raw mask as `read_raw_mask` returns it."""
        hand = self._colour(raw, name) if raw.ndim == 3 else self._grey(raw, name)
        return (~hand if self.invert else hand).astype(np.uint8)

    def _grey(self, raw: np.ndarray, name: str) -> np.ndarray:
        if self.hand_colour is not None:
            raise KbhError(f"{name}: a grey mask; --mask-hand-colour is for colour masks (use --mask-threshold "
                           f"or nothing)")
        values = np.unique(raw)
        if self.threshold is not None:
            if len(values) >= 2 and not values[0] <= self.threshold < values[-1]:
                raise KbhError(f"{name}: --mask-threshold {self.threshold:g} puts every pixel on one side (values "
                               f"{values[0]}..{values[-1]}); give a threshold from {values[0]} up to below "
                               f"{values[-1]}")
            return raw > self.threshold
        if len(values) > 2:
            shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
            raise KbhError(f"{name}: mask has {len(values)} distinct values ({shown}); give --mask-threshold")
        if len(values) == 2:
            return raw == values[1]
        return np.full(raw.shape, bool(len(values) and values[0]))

    def _colour(self, rgb: np.ndarray, name: str) -> np.ndarray:
        if self.threshold is not None:
            raise KbhError(f"{name}: a colour mask; --mask-threshold is for grey masks (give --mask-hand-colour "
                           f"R,G,B)")
        if self.hand_colour is not None:
            return np.all(rgb == np.asarray(self.hand_colour, dtype=rgb.dtype), axis=2)
        colours = np.unique(rgb.reshape(-1, 3), axis=0)
        black = np.all(colours == 0, axis=1)
        if len(colours) == 2 and black.any():
            return np.any(rgb != 0, axis=2)
        shown = ", ".join("(" + ",".join(str(int(v)) for v in c) + ")" for c in colours[:4])
        more = ", ..." if len(colours) > 4 else ""
        raise KbhError(f"{name}: colour mask with {len(colours)} colours ({shown}{more}); say which is the hand "
                       f"with --mask-hand-colour R,G,B")


HGR1_MASK = MaskRule(invert=True)  # HGR1 marks the hand with 0 (black) on white


def parse_colour(text: str) -> tuple[int, int, int]:
    """'0,0,255' -> (0, 0, 255)."""
    parts = str(text).replace(" ", "").split(",")
    if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise KbhError(f"--mask-hand-colour {text!r}: expected R,G,B with values 0..255, e.g. 0,0,255")
    return tuple(int(p) for p in parts)


def read_raw_mask(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A mask file's raw values: 2-D for grey, palette (indices kept) and 1-bit files, (H, W, 3) for colour.

    Pillow keeps palette ('P') indices as they are; OpenCV would expand palettes to colours. The header's size
    is checked against `max_pixels` before any pixel is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    check_pixels(*header_size(path, str(path)), str(path), max_pixels)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L"):
                arr = np.asarray(im)
            elif im.mode in ("LA", "PA"):
                arr = np.asarray(im)[..., 0]
            else:
                arr = np.asarray(im.convert("RGB"))
                if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
                    arr = arr[..., 0]
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise KbhError(f"{path}: not a readable mask image ({e.__class__.__name__})") from None
    return arr.astype(np.uint8) if arr.dtype == bool else arr


def read_mask(path: str | os.PathLike, rule: MaskRule = MaskRule(), max_pixels: int | None = DEFAULT_MAX_PIXELS
              ) -> np.ndarray:
    """A mask file as uint8 {0, 1} (1 = hand) under `rule`."""
    return rule.apply(read_raw_mask(path, max_pixels), str(path))


def coverage_outliers(coverage: dict[str, float]) -> list[str]:
    """Names of frames whose hand covers under COVERAGE_LOW or over COVERAGE_HIGH of the frame."""
    return [n for n, c in coverage.items() if not COVERAGE_LOW <= c <= COVERAGE_HIGH]


def coverage_warnings(coverage: dict[str, float]) -> list[str]:
    """Warnings for an imported set: outlying frames (whatever the flags), and a median over one half."""
    out = []
    odd = coverage_outliers(coverage)
    if odd:
        shown = ", ".join(f"{n} ({coverage[n]:.1%})" for n in odd[:3]) + (", ..." if len(odd) > 3 else "")
        out.append(f"warning: in {len(odd)} frame(s) the hand covers under {COVERAGE_LOW:.1%} or over "
                   f"{COVERAGE_HIGH:.0%} of the frame: {shown}; check --mask-invert, --mask-threshold and "
                   f"--mask-hand-colour")
    if coverage and float(np.median(list(coverage.values()))) > 0.5:
        out.append(f"warning: the hand covers {np.median(list(coverage.values())):.0%} of a frame (median); if the "
                   f"masks mark the hand with the lower value, re-import with --mask-invert (or without it, if "
                   f"given)")
    return out
