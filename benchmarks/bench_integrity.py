"""The integrity checks' cost on a KBH-sized split (docs/crash-safety.md); prints figures for benchmarks/RESULTS.md.

    kbh bench integrity               # 12,500 frames of 230x306, 20/20/60

1. Writes a 12,500-frame split (2,500 / 2,500 / 7,500 frames, 230x306, gzip:1) with kbh's shard writer, which
   builds each file in memory and writes it with plain writes; the baseline, run in the same process on the
   same first 500 frames, is h5py writing the same datasets straight to a file (the writer before docs/adr/0008).
2. Times the at-open check that `kbh train` and `kbh eval` run (kbh.split_folder.open_split_folder; median of
   5, files in the page cache) against `kbh verify --no-chunks` (every sha256) and the full `kbh verify` (every
   chunk's checksum too), same folder, same process.
Frames are smooth synthetic images with a moving noisy patch: the checks' cost depends on the frame count and
the files, not on the pixels.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from kbh.manifest import MANIFEST_FILE, build_manifest, with_shards, write_manifest
from kbh.shards import COLUMNS, ShardWriter, compression_kwargs, verify
from kbh.split_folder import open_split_folder

SIZE = (230, 306)


def frame(i: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([(xx + i) % 256, (yy * 2 + i) % 256, np.full((h, w), i % 256)], axis=2).astype(np.uint8)
    rng = np.random.default_rng(i)
    y, x = (i * 7) % (h - 40), (i * 13) % (w - 40)
    image[y:y + 40, x:x + 40] = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[y:y + 40, x:x + 40] = 1
    return image, mask


def write_direct(path: Path, frames: list) -> None:
    """The baseline: the same datasets, h5py writing to the file on disk as it goes, then fsync."""
    h, w = SIZE
    n = len(frames)
    kw = compression_kwargs(("gzip", 1))
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, h, w, 3), np.uint8, chunks=(1, h, w, 3), fletcher32=True, **kw)
        masks = f.create_dataset("masks", (n, h, w), np.uint8, chunks=(1, h, w), fletcher32=True, **kw)
        for name in COLUMNS:
            f.create_dataset(name, (n,), h5py.string_dtype() if name.endswith("_id") else np.int64)
        for i, (im, m) in enumerate(frames):
            images[i], masks[i] = im, m
    with open(path, "rb+") as f:  # the old writer fsynced before its rename too
        os.fsync(f.fileno())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kbh bench integrity", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=12_500)
    p.add_argument("--baseline-frames", type=int, default=500)
    args = p.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.frames} frames of "
          f"{SIZE[0]}x{SIZE[1]}")
    counts = {"train": args.frames // 5, "val": args.frames // 5}
    counts["test"] = args.frames - 2 * (args.frames // 5)
    persons = {s: [f"{s}{k:02d}" for k in range(10 if s != "test" else 30)] for s in counts}
    keys = {s: [(persons[s][i % len(persons[s])], i) for i in range(n)] for s, n in counts.items()}
    m = build_manifest(name="bench-integrity", unit="person", algorithm="bench", seed=0, requested=None,
                       image_size=SIZE,
                       splits={s: {"persons": set(persons[s]), "sequences": {f"{q}_s" for q in persons[s]},
                                   "frame_ids": [f"{q}_s/{i:05d}" for q, i in kl]} for s, kl in keys.items()})
    base = [frame(i) for i in range(args.baseline_frames)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "split"
        folder.mkdir()
        t = time.perf_counter()
        write_direct(Path(tmp) / "direct.h5", base)
        direct = time.perf_counter() - t
        t = time.perf_counter()
        with ShardWriter(Path(tmp), "probe", SIZE, len(base), "x", "bench") as wr:
            for i, (im, mk) in enumerate(base):
                wr.add(im, mk, f"a_b/{i:05d}", "a", "b", i)
        staged = time.perf_counter() - t
        print(f"shard writing, {len(base)} frames: in memory then plain writes {len(base) / staged:.0f} frames/s, "
              f"h5py straight to disk (baseline) {len(base) / direct:.0f} frames/s, ratio {direct / staged:.2f}")
        shards, t, done = {}, time.perf_counter(), 0
        for s, kl in keys.items():
            with ShardWriter(folder, s, SIZE, len(kl), m["manifest_id"], "bench") as wr:
                for q, i in kl:
                    im, mk = frame(done)
                    wr.add(im, mk, f"{q}_s/{i:05d}", q, f"{q}_s", i)
                    done += 1
            shards[s] = wr.shards
        write_manifest(folder / MANIFEST_FILE, with_shards(m, shards))
        size = sum(p.stat().st_size for p in folder.glob("*.h5"))
        print(f"wrote {done} frames in {sum(len(v) for v in shards.values())} shard files ({size / 2**20:.0f} MiB) "
              f"in {time.perf_counter() - t:.0f} s")
        checks = []
        for _ in range(5):
            t = time.perf_counter()
            open_split_folder(folder)
            checks.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert verify(folder, check_chunks=False).ok
        hashes = time.perf_counter() - t
        t = time.perf_counter()
        assert verify(folder).ok
        full = time.perf_counter() - t
        check = statistics.median(checks)
        print(f"at-open check (train/eval): median {check * 1000:.0f} ms (min {min(checks) * 1000:.0f}, max "
              f"{max(checks) * 1000:.0f}) for {done} frames")
        print(f"kbh verify --no-chunks: {hashes:.2f} s ({hashes / check:.0f}x the check); full kbh verify: "
              f"{full:.1f} s ({full / check:.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
