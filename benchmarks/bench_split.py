"""Split and shard benchmarks; prints figures (record them in benchmarks/RESULTS.md with this command line).

    kbh bench split                 # split quality + shard throughput
    kbh bench split --scale         # + `kbh split` time and peak RSS at two sizes

1. Split quality: on KBH-like populations (50 persons, ~12.5k frames, lognormal frames per person), the worst
   frame-ratio deviation |frames_k/N - r_k| (max over splits) of kbh.split against scikit-learn's
   GroupShuffleSplit applied twice (test off the whole, then val off the rest), same populations and seeds.
2. Shard throughput: write and random-read frames/s and bytes per frame for each compression, on real
   photographs (../shared/data/hgr1, resized to 230x306) or synthetic frames when that is absent.
3. Scale (--scale): synthesize the largest size once, run `kbh split` in a child process on subsets of its frames
   (the rest marked unlabeled) and report wall time and the child's peak RSS (ru_maxrss): flat memory means the
   frames are streamed, not loaded.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from kbh.split import group_shuffle_baseline, split_groups

from .fresh_process import run_fresh

REPO = Path(__file__).resolve().parents[1]

RATIOS = (0.2, 0.2, 0.6)
SIZE = (230, 306)


def kbh_like_population(seed: int, persons: int = 50, frames: int = 12_500) -> dict[str, int]:
    rng = np.random.default_rng(10_000 + seed)
    w = rng.lognormal(0.0, 0.6, persons)
    sizes = np.maximum(1, np.round(w / w.sum() * frames)).astype(int)
    return {f"p{i:02d}": int(s) for i, s in enumerate(sizes)}


def bench_quality(seeds: int) -> None:
    ours, base, ours_p, base_p = [], [], [], []
    t_ours = t_base = 0.0
    for seed in range(seeds):
        pop = kbh_like_population(seed)
        t = time.perf_counter()
        r = split_groups(pop, RATIOS, seed=seed)
        t_ours += time.perf_counter() - t
        t = time.perf_counter()
        b = group_shuffle_baseline(pop, RATIOS, seed=seed)
        t_base += time.perf_counter() - t
        ours.append(r.max_frame_deviation)
        base.append(b.max_frame_deviation)
        ours_p.append(max(abs(g - q) for g, q in zip(r.group_ratios, RATIOS)))
        base_p.append(max(abs(g - q) for g, q in zip(b.group_ratios, RATIOS)))
    ours, base = np.array(ours) * 100, np.array(base) * 100
    print(f"== split quality: {seeds} KBH-like populations (50 persons, ~12.5k frames, lognormal), ratios 20/20/60")
    print(f"   worst frame-ratio deviation, percentage points (mean / median / max):")
    print(f"   kbh.split             {ours.mean():7.3f} / {np.median(ours):7.3f} / {ours.max():7.3f}"
          f"   person-ratio dev max {max(ours_p) * 100:5.1f} pts   {t_ours / seeds * 1000:6.0f} ms/split")
    print(f"   GroupShuffleSplit x2  {base.mean():7.3f} / {np.median(base):7.3f} / {base.max():7.3f}"
          f"   person-ratio dev max {max(base_p) * 100:5.1f} pts   {t_base / seeds * 1000:6.0f} ms/split")
    print(f"   ours better on {int((ours < base).sum())}/{seeds} seeds, equal on {int((ours == base).sum())}")


def load_frames(n_distinct: int = 106):
    """(images, masks, source): real HGR1 photographs resized to SIZE, else synthetic frames."""
    from kbh.shards import resize_pair

    hgr1 = REPO.parent / "shared" / "data" / "hgr1"
    if (hgr1 / "images").is_dir():
        from kbh.imageio import read_image
        from kbh.mask_rules import HGR1_MASK, read_mask

        images, masks = [], []
        for p in sorted((hgr1 / "images").glob("*.jpg"))[:n_distinct]:
            m = read_mask(hgr1 / "masks" / f"{p.stem}.bmp", HGR1_MASK)
            im, m = resize_pair(read_image(p), m, SIZE)
            images.append(im)
            masks.append(m)
        return images, masks, f"HGR1 photographs ({len(images)} distinct, resized to {SIZE[0]}x{SIZE[1]})"
    from kbh.synth import person_attributes, render_sequence, sequence_attributes

    rng = np.random.default_rng(0)
    pairs = list(render_sequence(0, n_distinct, SIZE, person_attributes(rng), sequence_attributes(rng)))
    return [a for a, _ in pairs], [b for _, b in pairs], f"synthetic frames ({n_distinct} distinct)"


def bench_shards(n_frames: int, n_reads: int) -> None:
    from kbh.shards import ShardReader, ShardWriter

    images, masks, source = load_frames()
    print(f"== shard throughput: {n_frames} frames of {SIZE[0]}x{SIZE[1]} from {source}; "
          f"{n_reads} random reads (file in page cache)")
    print("   (f/s = frames per wall-clock second; CPU ms = process CPU time per frame, steadier on a busy machine)")
    print(f"   {'compression':12} {'write f/s':>10} {'CPU ms':>7} {'read f/s':>10} {'CPU ms':>7} {'KiB/frame':>10}"
          f" {'vs raw':>7}")
    raw = SIZE[0] * SIZE[1] * 4
    rng = np.random.default_rng(0)
    order = rng.integers(0, n_frames, n_reads)
    with tempfile.TemporaryDirectory(prefix="kbh-bench-") as tmp:
        for comp in (("none", None), ("gzip", 1), ("gzip", 4), ("lzf", None)):
            label = comp[0] + (f":{comp[1]}" if comp[1] is not None else "")
            d = Path(tmp) / label.replace(":", "")
            d.mkdir()
            t, c = time.perf_counter(), time.process_time()
            with ShardWriter(d, "train", SIZE, n_frames, "bench", "bench", comp) as w:
                for i in range(n_frames):
                    k = i % len(images)
                    w.add(images[k], masks[k], f"p_s/{i:05d}", "p", "s", i)
            t_write, c_write = time.perf_counter() - t, time.process_time() - c
            size = sum(s.stat().st_size for s in d.glob("*.h5"))
            reader = ShardReader(sorted(d.glob("*.h5")))
            reader[0]
            t, c = time.perf_counter(), time.process_time()
            for i in order:
                item = reader[int(i)]
            t_read, c_read = time.perf_counter() - t, time.process_time() - c
            reader.close()
            assert item["image"].shape == (*SIZE, 3)
            print(f"   {label:12} {n_frames / t_write:10.0f} {c_write / n_frames * 1000:7.2f} {n_reads / t_read:10.0f}"
                  f" {c_read / n_reads * 1000:7.2f} {size / n_frames / 1024:10.1f} {size / n_frames / raw:6.0%}")


def _measured_split(argv: list[str]) -> dict:
    """`kbh split ARGV` in this (fresh) process; its exit status, wall and CPU seconds and peak RSS."""
    from kbh.cli import main

    t = time.perf_counter()
    rc = main(argv)
    u = resource.getrusage(resource.RUSAGE_SELF)
    return {"rc": rc, "seconds": time.perf_counter() - t, "cpu": u.ru_utime + u.ru_stime, "maxrss_kib": u.ru_maxrss}


def bench_scale(sizes: list[int], workdir: Path | None) -> None:
    from kbh.synth import synthesize_workspace
    from kbh.workspace import Workspace

    largest = max(sizes)
    frames_per_seq, seqs = 50, 5
    persons = -(-largest // (frames_per_seq * seqs))
    tmp = tempfile.TemporaryDirectory(prefix="kbh-scale-", dir=workdir)
    root = Path(tmp.name)
    print(f"== scale: synthesizing {persons * seqs * frames_per_seq} frames ({persons} persons x {seqs} sequences "
          f"x {frames_per_seq}) in {root} ...", flush=True)
    t = time.perf_counter()
    ws = Workspace.init(root / "ws")
    synthesize_workspace(ws, persons, seqs, frames_per_seq, SIZE, seed=0, labeled=True, progress=False)
    print(f"   synthesized in {time.perf_counter() - t:.0f} s", flush=True)
    ids = [fr.id for fr in ws.frames()]
    for n in sorted(sizes):
        # only the first n frames are eligible for this run
        ws.set_statuses({i: "done" if k < n else "unlabeled" for k, i in enumerate(ids)})
        out = root / f"out{n}"
        r = run_fresh(_measured_split, ["split", str(root / "ws"), "--by-person", "20/20/60", "--seed", "0",
                                        "--out", str(out), "--no-progress"], what=f"kbh split of {n} frames")
        if r["rc"] != 0:
            raise SystemExit(f"scale run failed (exit {r['rc']})")
        secs, cpu, rss = r["seconds"], r["cpu"], r["maxrss_kib"] / 1024
        size = sum(p.stat().st_size for p in out.glob("*.h5")) / 2**20
        print(f"   kbh split {n:6d} frames: {secs:6.1f} s wall ({n / secs:5.0f} frames/s), {cpu:6.1f} s CPU "
              f"({cpu / n * 1000:5.1f} ms/frame), peak RSS {rss:6.0f} MiB, "
              f"shards {size:6.0f} MiB", flush=True)
        if n < largest:
            import shutil

            shutil.rmtree(out)
    ws.close()
    tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kbh bench split", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--frames", type=int, default=1000, help="frames written per compression")
    ap.add_argument("--reads", type=int, default=1000)
    ap.add_argument("--scale", action="store_true", help="also run the scale benchmark (minutes, ~1.5 GB disk)")
    ap.add_argument("--scale-sizes", default="2500,12500")
    ap.add_argument("--workdir", type=Path, help="where the scale workspace goes (default: system temp)")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-shards", action="store_true")
    args = ap.parse_args(argv)
    if not args.skip_quality:
        bench_quality(args.seeds)
    if not args.skip_shards:
        bench_shards(args.frames, args.reads)
    if args.scale:
        bench_scale([int(s) for s in args.scale_sizes.split(",")], args.workdir)
    return 0


if __name__ == "__main__":
    main()
