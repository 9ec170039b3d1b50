"""Image and mask files: atomic writes and strict reads.

Every file the workspace or a split writes goes to a temporary name in the same folder and is renamed over the
target, so a killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import KbhError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside `path`; on success fsync and rename it over `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 grey or RGB array as a lossless PNG, atomically."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: PNG data must be uint8, got {array.dtype}")
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise KbhError(f"{path}: could not encode PNG")
    atomic_write_bytes(path, buf.tobytes())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (H, W, 3); KbhError naming `name` if unreadable."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None or arr.size == 0:
        raise KbhError(f"{name}: not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KbhError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_image(data, str(path))


def read_mask_png(path: str | os.PathLike) -> np.ndarray:
    """Read a mask written by the workspace (0/255 PNG) as uint8 {0, 1}."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise KbhError(f"{path}: not a readable mask PNG")
    return (arr > 127).astype(np.uint8)


def read_raw_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask in someone else's encoding as a 2-D array of its raw values (palette indices kept).

    Pillow keeps palette ('P') indices and 1-bit images as they are; OpenCV would expand palettes to colours.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L"):
                arr = np.asarray(im)
            elif im.mode in ("LA", "PA"):
                arr = np.asarray(im)[..., 0]
            else:
                rgb = np.asarray(im.convert("RGB"))
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    # A colour mask: any non-black pixel is one value.
                    return (rgb.max(axis=2) > 0).astype(np.uint8) * 255
                arr = rgb[..., 0]
    except (OSError, UnidentifiedImageError) as e:
        raise KbhError(f"{path}: not a readable mask image ({e.__class__.__name__})") from None
    return arr.astype(np.uint8) if arr.dtype == bool else arr


def binarize_mask(raw: np.ndarray, name: str, invert: bool = False, threshold: float | None = None) -> np.ndarray:
    """Turn a raw mask into uint8 {0,1} with 1 = hand.

    Two-valued masks (0/1, 0/255, palette indices, any pair) map the larger value to hand; more than two values
    need an explicit `threshold` (hand = value > threshold). `invert` flips the result (e.g. HGR1: hand = 0).
    """
    values = np.unique(raw)
    if threshold is not None:
        out = raw > threshold
    elif len(values) > 2:
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise KbhError(f"{name}: mask has {len(values)} distinct values ({shown}); give --mask-threshold")
    elif len(values) == 2:
        out = raw == values[1]
    else:
        # One value: all background if it is 0/False, else all hand.
        out = np.full(raw.shape, bool(values[0]) if len(values) else False)
    if invert:
        out = ~out
    return out.astype(np.uint8)
