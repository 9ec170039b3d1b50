"""A frame's undo history as bytes, so that it is kept with the frame in the workspace and undo works after the
frame is reopened, in this session or the next (docs/adr/0009). Qt-free.

The history is the session's own list of `Change`s: stroke additions and removals with their positions, status
moves, and each mask change as the sparse difference (changed pixel indices, old and new values). It is stored
with the end state it leads to (the stroke list and the status), and restored only onto that same state: a frame
changed by other means (another tool, an import) starts a fresh history. At most MAX_STEPS steps are kept, the
oldest dropped first (napari keeps 100 in memory).
"""

from __future__ import annotations

import io
import json

import numpy as np

from kbh.strokes import Stroke

from .session import Change, MaskDiff

MAX_STEPS = 1000
FORMAT = 1


def _stroke(s: Stroke) -> list:
    return [int(s.label), float(s.radius), [list(p) for p in s.points], s.kind]


def _unstroke(v) -> Stroke:
    return Stroke(int(v[0]), float(v[1]), tuple(tuple(p) for p in v[2]), v[3] if len(v) > 3 else "scribble")


def encode(undo: list[Change], redo: list[Change], strokes: list[Stroke], status: str) -> bytes:
    """The history (both stacks) and the end state it leads to, as one compressed blob."""
    undo = undo[-MAX_STEPS:]
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for k, (stack, change) in enumerate([("undo", c) for c in undo] + [("redo", c) for c in redo]):
        entries.append({"stack": stack, "text": change.text, "settled": change.settled, "rerun": change.rerun,
                        "removed": [[i, _stroke(s)] for i, s in change.removed],
                        "added": [[i, _stroke(s)] for i, s in change.added],
                        "status": list(change.status) if change.status else None,
                        "mask": change.mask is not None})
        if change.mask is not None:
            idx = change.mask.index.astype(np.int64)
            arrays[f"i{k}"] = np.diff(idx, prepend=0).astype(np.int64)  # sorted indices: small steps compress well
            arrays[f"o{k}"] = change.mask.old
            arrays[f"n{k}"] = change.mask.new
    header = {"format": FORMAT, "entries": entries, "strokes": [_stroke(s) for s in strokes], "status": status}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def decode(blob: bytes, strokes: list[Stroke], status: str) -> tuple[list[Change], list[Change]] | None:
    """(undo, redo) stacks if `blob` leads to exactly `strokes` and `status`, else None (start afresh)."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            if header.get("format") != FORMAT:
                return None
            if [_unstroke(s) for s in header["strokes"]] != list(strokes) or header["status"] != status:
                return None
            undo, redo = [], []
            for k, e in enumerate(header["entries"]):
                mask = None
                if e["mask"]:
                    mask = MaskDiff(np.cumsum(z[f"i{k}"]).astype(np.int64), z[f"o{k}"], z[f"n{k}"])
                change = Change(e["text"], removed=tuple((i, _unstroke(s)) for i, s in e["removed"]),
                                added=tuple((i, _unstroke(s)) for i, s in e["added"]),
                                status=tuple(e["status"]) if e["status"] else None, mask=mask,
                                settled=e["settled"], rerun=e["rerun"])
                (undo if e["stack"] == "undo" else redo).append(change)
            return undo, redo
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None  # a history this version cannot read is dropped, never the annotation
