"""Synthetic data speed: rendering alone (one core), PNG encoding alone, and a whole `synthesize_workspace` run.

    kbh bench synth [--persons 50 --sequences 5 --frames 50] [--size 230x306]

The default workspace run is KBH-sized: 50 persons x 5 sequences x 50 frames = 12,500 frames at 230x306.
Baseline in the same process: encoding the same frames as PNG (the part every import pays too).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


from kbh.synth import render_sequence, synthesize_workspace
from kbh.synth.writer import _png
from kbh.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    np.seterr(all="ignore")
    ap = argparse.ArgumentParser(prog="kbh bench synth")
    ap.add_argument("--persons", type=int, default=50)
    ap.add_argument("--sequences", type=int, default=5)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--size", default="230x306")
    ap.add_argument("--render-frames", type=int, default=1000)
    args = ap.parse_args(argv)
    h, w = (int(x) for x in args.size.split("x"))
    cv2.setNumThreads(1)  # one core

    # Wall time is at the mercy of whatever else runs on the machine; CPU time of this process is not.
    frames = []
    t, c = time.perf_counter(), time.process_time()
    per_seq = 100
    for seed in range(args.render_frames // per_seq):
        frames += [img for img, _ in render_sequence(seed, per_seq, (h, w))]
    render, render_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    for img in frames:
        _png(img)
    encode, encode_cpu = time.perf_counter() - t, time.process_time() - c
    n = len(frames)
    print(f"render    {n} frames {h}x{w}: {n / render:7.1f} frames/s wall, {n / render_cpu:7.1f} per CPU-second "
          f"(one core, incl. per-sequence scene setup)")
    print(f"png only  {n} frames {h}x{w}: {n / encode:7.1f} frames/s wall, {n / encode_cpu:7.1f} per CPU-second "
          f"(baseline: encoding alone)")

    with tempfile.TemporaryDirectory() as tmp:
        with Workspace.init(Path(tmp) / "ws") as ws:
            s = synthesize_workspace(ws, args.persons, args.sequences, args.frames, size=(h, w), seed=0,
                                     progress=False)
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 1e6
    print(f"workspace {s['frames']} frames ({s['persons']} persons x {args.sequences} x {args.frames}): "
          f"{s['seconds']:.1f} s, {s['frames'] / s['seconds']:.1f} frames/s, {size_mb:.0f} MB on disk "
          f"(render + 2 PNG encodes + 2 fsynced files + SQLite per frame)")


if __name__ == "__main__":
    main()
