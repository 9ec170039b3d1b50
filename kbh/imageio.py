"""Image and mask files: strict reads (pixel limits from the header, before decoding), hashes, and PNG writes
(atomic, through kbh.atomic_file)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import cv2
import numpy as np

from .atomic_file import atomic_write_bytes
from .errors import KbhError


DEFAULT_MAX_PIXELS = 50_000_000  # per image or mask; a 20000x20000 PNG of 1 MB would decode to 1.2 GB
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


def header_size(source, name: str) -> tuple[int, int]:
    """(width, height) from an image's header, without decoding its pixels; `source` is bytes or a path."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # our limit (check_pixels) replaces Pillow's, which refuses without the size
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    if (len(source) if is_bytes else _size(source)) == 0:
        raise KbhError(f"{name}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source) as im:
            return im.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise KbhError(f"{name}: not a readable image ({e.__class__.__name__})") from None


def _size(path) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def check_pixels(width: int, height: int, name: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    if max_pixels and int(width) * int(height) > max_pixels:
        raise KbhError(f"{name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the limit of "
                       f"{max_pixels / 1e6:g} (raise it with --max-pixels)")


def decode_image(data: bytes, name: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (H, W, 3); KbhError naming `name` if empty, unreadable or, by
    its header (read before any pixel is decoded), larger than `max_pixels`."""
    check_pixels(*header_size(data, name), name, max_pixels)
    # The stored pixel grid, as the header gives it: OpenCV would apply a JPEG's EXIF rotation, which the mask
    # file (and the header size) do not have.
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.size == 0:
        raise KbhError(f"{name}: not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KbhError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_image(data, str(path), max_pixels)


def read_mask_png(path: str | os.PathLike) -> np.ndarray:
    """Read a mask written by the workspace (0/255 PNG) as uint8 {0, 1}."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise KbhError(f"{path}: not a readable mask PNG")
    return (arr > 127).astype(np.uint8)
