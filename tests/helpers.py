"""Small fixtures shared by tests: tiny images and masks written to disk."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import cv2
import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def blob_image(h: int = 40, w: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with a bright ellipse ("hand") on a noisy dark background, and its {0,1} mask."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 60, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cy, cx = h // 2 + int(rng.integers(-3, 4)), w // 2 + int(rng.integers(-3, 4))
    cv2.ellipse(mask, (cx, cy), (w // 5, h // 4), 0, 0, 360, 1, -1)
    img[mask.astype(bool)] = (200, 150, 120)
    return img, mask


def write_rgb(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def make_ws(root, layout, hw=(18, 24), status="done", seed=0):
    """layout: {person: {sequence: n_frames}}; every frame labeled with `status` (None: leave unlabeled)."""
    from kbh.workspace import Workspace

    rng = np.random.default_rng(seed)
    ws = Workspace.init(root)
    h, w = hw
    for person, seqs in layout.items():
        for sid, n in seqs.items():
            ws.upsert_sequence(sid, person)
            with ws.transaction():
                for i in range(n):
                    ws.add_image(sid, i, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            if status:
                for fr in ws.frames(sequence=sid):
                    ws.save_annotation(fr.id, mask=rng.random((h, w)) > 0.6, status=status, source="import")
    ws.close()
    return root


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str):
    """A small tmpfs at `path` (a full or, remounted, a read-only disk for real); the test is skipped where
    mounting is not allowed (it needs root, as in CI). Unmounted afterwards."""
    import pytest

    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def flip_byte_in_chunk(path, dataset: str = "images", index: int = 0, at: int | None = None) -> None:
    """Corrupt one stored byte of an HDF5 dataset's chunk `index` in place: the byte `at` bytes into the chunk
    (default: its middle), XOR 0xFF."""
    import h5py

    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(index)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + (info.size // 2 if at is None else at))
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))
