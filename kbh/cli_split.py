"""`kbh split`, `kbh verify`, `kbh manifest-from-lists`: person-disjoint splits into HDF5 shards + manifest.

Heavy modules (h5py, cv2, sklearn) are imported inside the handlers, so registering these commands is cheap.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from .errors import KbhError

DEFAULT_SIZE = "230x306"


def register(sub, bench_sub) -> None:
    p = sub.add_parser("split", help="split a workspace by person into HDF5 shards with a manifest",
                       description="Split a workspace's labeled frames (status done/reviewed) into train/val/test "
                                   "HDF5 shards. Ratios are train/val/test percentages (or train/test).")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--by-person", metavar="RATIOS", help="e.g. 20/20/60: persons never span splits")
    how.add_argument("--by-sequence", metavar="RATIOS",
                     help="sequences are the unit (data whose persons each have one sequence); refused if a person would span splits")
    how.add_argument("--manifest", metavar="FILE", help="reproduce a published split (data_manifests/NAME.json)")
    p.add_argument("workspace", metavar="WS")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for shards and manifest.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default=DEFAULT_SIZE, help="HEIGHTxWIDTH of the frames in the shards (default %(default)s)")
    p.add_argument("--name", help="dataset name in the manifest (default: the output folder's name)")
    p.add_argument("--compression", default=None, help="gzip[:LEVEL], lzf or none (default gzip:1)")
    p.add_argument("--max-shard-gb", type=float, default=0.25,
                   help="raw GiB per shard file; each is built in memory, compressed (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing split in DIR")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_split)

    v = sub.add_parser("verify", help="check a split folder against its manifest (hashes, counts, persons, checksums)")
    v.add_argument("folder", metavar="DIR")
    v.add_argument("--no-chunks", action="store_true", help="skip reading every chunk (fletcher32) for speed")
    v.set_defaults(func=cmd_verify)

    m = sub.add_parser("manifest-from-lists", help="build a manifest from published train/val/test list files")
    m.add_argument("listdir", metavar="LISTDIR")
    m.add_argument("--out", required=True, metavar="FILE")
    m.add_argument("--name", default="kbh-2019")
    m.set_defaults(func=cmd_manifest_from_lists)



# -- split -----------------------------------------------------------------------------------------------------
def eligible_frames(ws) -> tuple[list, dict[str, int]]:
    """Frames that go into shards (status done/reviewed with a mask file), and why the others were left out."""
    from .workspace import LABELED_STATUSES

    no_mask = ws.frames_without_mask()
    keep, left_out = [], Counter()
    for fr in ws.frames():
        if fr.status not in LABELED_STATUSES:
            left_out[f"status {fr.status}"] += 1
        elif fr.id in no_mask:
            left_out[f"status {fr.status} without a mask"] += 1
        else:
            keep.append(fr)
    return keep, dict(sorted(left_out.items()))


def split_workspace(ws, out_dir: str | Path, *, ratios: tuple[float, ...] | None = None, unit: str = "person",
                    published: dict | None = None, seed: int = 0, size: tuple[int, int] = (230, 306),
                    name: str | None = None, compression=None, max_bytes: int | None = None,
                    overwrite: bool = False, progress: bool = True) -> dict:
    """Split `ws` into shards and a manifest that appear at `out_dir` together, only when complete (see
    kbh.split_folder: staging folder, writer lock, atomic swap for `overwrite`); returns the manifest.

    Either `ratios` (fractions, train/val/test) with `unit` "person" or "sequence", or `published` (a manifest
    whose frame keys decide each frame's split).
    """
    from . import manifest as mf
    from . import shards as sh
    from . import split as sp
    from .split_folder import writing_split

    out_dir = Path(out_dir)
    frames, left_out = eligible_frames(ws)
    total_frames = ws.count_frames()
    if not frames:
        why = ", ".join(f"{n} {k}" for k, n in left_out.items()) or "the workspace has no frames"
        raise KbhError(f"{ws.root}: no eligible frames (only done/reviewed frames with a mask go into shards; "
                       f"left out: {why})")
    missing: dict = {}
    extra: dict = {}
    if published is not None:
        where = published.get("name", "manifest")
        split_of = mf.split_of_keys(published)
        names = tuple(published["splits"])
        not_listed = [fr for fr in frames if fr.key not in split_of]
        if not_listed:
            left_out["not in the manifest"] = len(not_listed)
        frames = [fr for fr in frames if fr.key in split_of]
        if not frames:
            raise KbhError(f"{ws.root}: none of the {total_frames} workspace frames is listed in manifest {where}")
        present = {fr.key for fr in frames}
        missing = {s: sum(1 for k in e.get("frame_ids", []) if k not in present)
                   for s, e in published["splits"].items()}
        assign = {fr.key: split_of[fr.key] for fr in frames}
        algorithm = f"manifest {where} ({published.get('manifest_id')})"
        requested = None
        unit = published.get("unit", "person")
        extra = {"reproduces": {"name": where, "manifest_id": published.get("manifest_id")}}
        result = None
    else:
        group_of = (lambda fr: fr.person_id) if unit == "person" else (lambda fr: fr.sequence_id)
        sizes = Counter(group_of(fr) for fr in frames)
        result = sp.split_groups(dict(sizes), ratios, seed=seed)
        names = result.names
        assign = {fr.key: result.assignment[group_of(fr)] for fr in frames}
        if unit == "sequence":  # sequences are the unit, but no person is ever in two splits
            person_splits: dict[str, set] = {}
            for fr in frames:
                person_splits.setdefault(fr.person_id, set()).add(assign[fr.key])
            spanning = sorted(p for p, s in person_splits.items() if len(s) > 1)
            if spanning:
                raise KbhError(f"--by-sequence would put person {spanning[0]!r} (and {len(spanning) - 1} more) in "
                               f"{' and '.join(sorted(person_splits[spanning[0]]))}; persons are never split: "
                               f"use --by-person")
        algorithm = f"{sp.ALGORITHM} [{result.method}]"
        requested = {n: r for n, r in zip(names, ratios)}
    by_split: dict[str, list] = {n: [] for n in names}
    for fr in frames:  # workspace order: person, sequence, index
        by_split[assign[fr.key]].append(fr)
    splits = {}
    for n in names:
        fl = by_split[n]
        entry = {"persons": {fr.person_id for fr in fl}, "sequences": {fr.sequence_id for fr in fl},
                 "frame_ids": [fr.key for fr in fl]}
        if published is not None:
            entry.update({k: v for k, v in published["splits"][n].items()
                          if k in ("released_name", "paper_name", "released_file")})
        splits[n] = entry
    owner: dict[str, str] = {}
    for n, e in splits.items():
        for p in e["persons"]:
            if owner.setdefault(p, n) != n:  # whatever the unit or the manifest says
                raise KbhError(f"person {p!r} would be in {owner[p]} and {n}: refusing (splits are person-disjoint)")
    comp = sh.parse_compression(compression) if isinstance(compression, str) else (compression or sh.DEFAULT_COMPRESSION)
    m = mf.build_manifest(
        name=name or out_dir.resolve().name, unit=unit, algorithm=algorithm,
        seed=seed if published is None else None, requested=requested, splits=splits, source=str(ws.root),
        image_size=size, left_out=left_out,
        extra={**extra, "compression": list(comp)},
    )
    if missing:
        m["missing"] = {"frames_not_in_workspace": missing}
    with writing_split(out_dir, overwrite) as staging:  # appears at out_dir only when complete
        shards = sh.write_split_shards(ws, by_split, staging, size, m["manifest_id"], comp,
                                       max_bytes or sh.DEFAULT_MAX_BYTES, progress)
        m = mf.with_shards(m, shards)
        mf.write_manifest(staging / mf.MANIFEST_FILE, m)
    return m


def format_split_report(m: dict) -> str:
    lines = [f"split {m['name']} ({m['manifest_id']}): {m['split_algorithm']}" +
             (f", seed {m['seed']}" if m.get("seed") is not None else "")]
    req = m.get("requested_ratios") or {}
    got_f, got_p = m["achieved_ratios"]["frames"], m["achieved_ratios"]["persons"]
    unit = m.get("unit", "person")
    lines.append(f"  {'split':6} {'persons':>8} {'seqs':>6} {'frames':>7}   {'asked':>6} "
                 f"{'frames got':>10} {'persons got':>11}")
    for n, e in m["splits"].items():
        asked = f"{req[n] * 100:5.1f}%" if n in req else "    - "
        lines.append(f"  {n:6} {len(e['persons']):8d} {len(e['sequences']):6d} {e['frame_count']:7d}   {asked:>6} "
                     f"{got_f[n] * 100:9.2f}% {got_p[n] * 100:10.1f}%")
    if req:
        dev = max(abs(got_f[n] - req[n]) for n in req)
        lines.append(f"  worst frame-ratio deviation: {dev * 100:.3f} points (unit: {unit})")
    if m.get("left_out"):
        lines.append("  left out: " + ", ".join(f"{n} frames ({k})" for k, n in m["left_out"].items()))
    missing = (m.get("missing") or {}).get("frames_not_in_workspace")
    if missing and any(missing.values()):
        lines.append(f"  manifest frames missing from the workspace: {sum(missing.values())} (" +
                     ", ".join(f"{k} {v}" for k, v in missing.items()) + ")")
    n_files = sum(len(e.get("shards", [])) for e in m["splits"].values())
    lines.append(f"  wrote {n_files} shard file(s) + manifest.json")
    return "\n".join(lines)


def cmd_split(args: argparse.Namespace) -> int:
    from . import manifest as mf
    from . import shards as sh
    from . import split as sp
    from .workspace import Workspace

    size = sh.parse_size(args.size)
    published, ratios, unit = None, None, "person"
    if args.manifest:
        published = mf.read_manifest(args.manifest)
    else:
        unit = "person" if args.by_person else "sequence"
        ratios = sp.parse_ratios(args.by_person or args.by_sequence)
    if args.max_shard_gb <= 0:
        raise KbhError(f"--max-shard-gb {args.max_shard_gb}: must be positive")
    with Workspace.open(args.workspace, readonly=True) as ws:
        m = split_workspace(ws, args.out, ratios=ratios, unit=unit, published=published, seed=args.seed, size=size,
                            name=args.name, compression=args.compression,
                            max_bytes=int(args.max_shard_gb * (1 << 30)), overwrite=args.overwrite,
                            progress=not args.no_progress)
    print(format_split_report(m))
    return 0


# -- verify ----------------------------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    from .shards import verify

    folder = Path(args.folder)
    if not folder.is_dir():
        raise KbhError(f"{folder}: not a folder")
    rep = verify(folder, check_chunks=not args.no_chunks)
    for note in rep.notes:
        print(f"note: {note}")
    if rep.problems:
        for p in rep.problems:
            print(f"FAIL: {p}")
        print(f"kbh verify: {len(rep.problems)} problem(s) in {folder}")
        return 1
    counts = ", ".join(f"{k} {v}" for k, v in rep.frames.items())
    print(f"OK {folder}: {rep.files} shard file(s), {sum(rep.frames.values())} frames ({counts}); hashes, counts, "
          f"disjointness{'' if args.no_chunks else ' and chunk checksums'} all good")
    return 0


# -- manifest from published lists -----------------------------------------------------------------------------
def cmd_manifest_from_lists(args: argparse.Namespace) -> int:
    from .manifest import manifest_from_lists, write_manifest

    listdir = Path(args.listdir)
    if not listdir.is_dir():
        raise KbhError(f"{listdir}: not a folder")
    m = manifest_from_lists(listdir, name=args.name)
    write_manifest(args.out, m)
    parts = ", ".join(f"{k} {e['frame_count']} frames / {len(e['persons'])} persons "
                      f"(paper: {e.get('paper_name', k)})" for k, e in m["splits"].items())
    print(f"wrote {args.out}: {m['name']} ({m['manifest_id']}): {parts}")
    return 0
