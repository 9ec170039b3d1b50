"""`kbh export`: the workspace's finished masks as PNG files, or as one COCO JSON with RLE masks.

COCO's compressed RLE is written here rather than with pycocotools: it is a 20-line codec and pycocotools
would be a compiled dependency for one function. The test checks it against a hand-encoded case.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .atomic_folder import recover, staged_folder, writer_lock
from .errors import KbhError
from .atomic_file import atomic_path
from .imageio import write_png
from .workspace import LABELED_STATUSES, Workspace, safe_name


def rle_encode(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a binary (H, W) mask: runs over the column-major pixels, starting with 0s."""
    flat = np.asarray(mask, bool).flatten(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    chars = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    s, counts, p = rle["counts"], [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    flat = np.zeros(h * w, bool)
    pos, value = 0, False
    for n in counts:
        flat[pos:pos + n] = value
        pos += n
        value = not value
    return flat.reshape((h, w), order="F").astype(np.uint8)


def export(ws: Workspace, out: Path, fmt: str, statuses=LABELED_STATUSES, images: bool = False,
           progress: bool = True) -> int:
    frames = [f for f in ws.frames(status=list(statuses))]
    if not frames:
        raise KbhError(f"{ws.root}: no frames with status {'/'.join(statuses)} to export")
    out = Path(out)
    if fmt == "png":
        if out.exists() and (not out.is_dir() or any(p.name not in ("masks", "images") for p in out.iterdir())):
            raise KbhError(f"{out}: exists and is not an earlier PNG export (masks/, images/); choose another --out")
        with writer_lock(out, "kbh export"):
            recover(out)  # staging folders of a killed export
            with staged_folder(out) as staging:  # the folder appears (or replaces an earlier export) when complete
                _png_files(ws, frames, staging, images, progress)
        return len(frames)
    if fmt != "coco":
        raise KbhError(f"unknown export format {fmt!r} (png or coco)")
    _coco_file(ws, frames, out, progress)
    return len(frames)


def _png_files(ws: Workspace, frames, folder: Path, images: bool, progress: bool) -> None:
    from tqdm import tqdm

    used: set[str] = set()
    for f in tqdm(frames, desc="export", unit="frame", disable=not progress, file=sys.stderr):
        base = f"{safe_name(f.person_id)}_{safe_name(f.sequence_id)}/{f.frame_index:05d}"
        if base in used:  # ids that differ only in characters a file name cannot hold ("x y", "x/y")
            base = f"{base}__{f.id}"
        used.add(base)
        write_png(folder / "masks" / f"{base}.png", ws.mask(f) * 255)
        if images:
            with atomic_path(folder / "images" / f"{base}{Path(f.path).suffix}") as tmp:
                shutil.copyfile(ws.root / f.path, tmp)


def _coco_file(ws: Workspace, frames, out: Path, progress: bool) -> None:
    from tqdm import tqdm

    doc = {
        "info": {"description": f"kbh export of {ws.root}", "version": __version__,
                 "date_created": time.strftime("%Y-%m-%dT%H:%M:%S")},
        "categories": [{"id": 1, "name": "hand", "supercategory": "person"}],
        "images": [], "annotations": [],
    }
    for f in tqdm(frames, desc="export", unit="frame", disable=not progress, file=sys.stderr):
        mask = ws.mask(f)
        doc["images"].append({"id": f.id, "file_name": f.path, "width": f.width, "height": f.height,
                              "kbh_key": f.key, "person_id": f.person_id, "sequence_id": f.sequence_id,
                              "frame_index": f.frame_index})
        ys, xs = np.nonzero(mask)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)] \
            if xs.size else [0, 0, 0, 0]
        doc["annotations"].append({"id": f.id, "image_id": f.id, "category_id": 1, "iscrowd": 0,
                                   "area": int(mask.sum()), "bbox": bbox, "segmentation": rle_encode(mask)})
    target = out if out.suffix == ".json" else out / "annotations.json"
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(doc))
