"""Tiny synthetic shard folders for the training tests (written with kbh.shards, in the shard contract's format)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

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


def make_shards(out: str | Path, counts=None, size=(32, 48), seed: int = 0, manifest_id: str = "testmanifest0001") -> Path:
    """Write train/val/test shards of synthetic frames; persons differ per split like a person-disjoint split."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = counts or {"train": 12, "val": 4, "test": 4}
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        with ShardWriter(out, split, size, n, manifest_id, "synthetic", max_bytes=size[0] * size[1] * 4 * 8) as wr:
            for i in range(n):
                image, mask = synthetic_frame(rng, size)
                person = f"{split}p{i % 2}"
                wr.add(image, mask, f"{person}_s0/{i:05d}", person, f"{person}_s0", i)
    (out / "manifest.json").write_text(json.dumps({"manifest_id": manifest_id, "name": "synthetic-test"}))
    return out
