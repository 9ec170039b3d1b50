"""Tiny synthetic shard folders for the training tests (written with kbh.shards, in the shard contract's format)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from kbh.manifest import MANIFEST_FILE, build_manifest, with_shards, write_manifest
from kbh.shards import ShardWriter


def synthetic_frame(rng: np.random.Generator, size=(32, 48)):
    """A noisy background with one skin-coloured ellipse; mask = the ellipse (1 = hand)."""
    h, w = size
    image = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    center = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
    axes = (int(rng.integers(w // 8, w // 4)), int(rng.integers(h // 6, h // 3)))
    cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    skin = np.array([220, 170, 140], np.int16) + rng.integers(-20, 20, 3)
    image[mask == 1] = np.clip(skin + rng.integers(-15, 15, (int(mask.sum()), 3)), 0, 255).astype(np.uint8)
    return image, mask


def make_shards(out: str | Path, counts=None, size=(32, 48), seed: int = 0) -> Path:
    """A complete split folder (shards + manifest, as `kbh split` writes them) of synthetic train/val/test frames;
    persons differ per split like a person-disjoint split. The manifest id is in `manifest_id_of(out)`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = counts or {"train": 12, "val": 4, "test": 4}
    rng = np.random.default_rng(seed)
    frames = {split: [(f"{split}p{i % 2}", i) for i in range(n)] for split, n in counts.items()}
    m = build_manifest(name="synthetic-test", unit="person", algorithm="test fixture", seed=seed, requested=None,
                       image_size=size,
                       splits={split: {"persons": {p for p, _ in fl}, "sequences": {f"{p}_s0" for p, _ in fl},
                                       "frame_ids": [f"{p}_s0/{i:05d}" for p, i in fl]} for split, fl in frames.items()})
    shards = {}
    for split, fl in frames.items():
        with ShardWriter(out, split, size, len(fl), m["manifest_id"], "synthetic",
                         max_bytes=size[0] * size[1] * 4 * 8) as wr:
            for person, i in fl:
                image, mask = synthetic_frame(rng, size)
                wr.add(image, mask, f"{person}_s0/{i:05d}", person, f"{person}_s0", i)
        shards[split] = wr.shards
    write_manifest(out / MANIFEST_FILE, with_shards(m, shards))
    return out


def manifest_id_of(folder: str | Path) -> str:
    return json.loads((Path(folder) / MANIFEST_FILE).read_text())["manifest_id"]
