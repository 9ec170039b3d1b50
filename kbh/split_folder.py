"""A split folder's life: written whole or not at all, by one writer at a time, and checked at every open.

Writing (`writing_split`): the shards and the manifest (last) go into a staging folder beside the target that
becomes the target only when complete (kbh.atomic_folder), so `--overwrite` keeps the old split whole until
the new one is whole. A lock, `.NAME.lock` beside the target (flock: it dies with its process), turns a second
writer away; under it, the next writer removes what a killed one left.

Opening (`open_split_folder`): train and eval read a folder only if its manifest is intact and lists exactly
the shard files present, each with the manifest's id, split, size and frame count, its frame ids, and no HDF5
feature that reads another file (external storage, external or soft links, virtual datasets). It reads the small
columns only: well under a second for KBH's 12.5k frames. `kbh verify` adds every hash and chunk checksum.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from .atomic_folder import recover, resolved, staged_folder, writer_lock
from .errors import KbhError


def _check_target(target: Path, overwrite: bool) -> None:
    from .manifest import MANIFEST_FILE
    from .shards import SHARD_RE

    if not target.exists():
        return
    if not target.is_dir():
        raise KbhError(f"{target}: exists and is not a folder")
    names = sorted(p.name for p in target.iterdir())
    if not names:
        return
    foreign = [n for n in names if n != MANIFEST_FILE and not SHARD_RE.match(n)]
    if foreign:
        raise KbhError(f"{target}: holds files that are not part of a split ({', '.join(foreign[:3])}); a split "
                       f"replaces the whole folder, so choose another --out or move them")
    if not overwrite:
        raise KbhError(f"{target}: already holds a split ({names[0]}); use --overwrite to replace it")


@contextlib.contextmanager
def writing_split(target: str | Path, overwrite: bool = False):
    """Yield a staging folder to write a split into; on success it replaces `target` atomically."""
    target = resolved(target)
    with writer_lock(target, "kbh split"):
        notes = recover(target)
        _check_target(target, overwrite)
        with staged_folder(target) as staging:
            yield staging
        for note in notes:
            print(f"kbh split: {note}")


# -- the check at every open -------------------------------------------------------------------------------
@dataclass
class SplitFolder:
    folder: Path
    manifest: dict
    paths: dict[str, list[Path]] = field(default_factory=dict)  # split -> its shard files, in manifest order

    @property
    def manifest_id(self) -> str:
        return str(self.manifest["manifest_id"])


def check_split_folder(folder: str | Path) -> tuple[SplitFolder | None, list[str]]:
    """The cheap structural check: (the folder, []) if it may be read, else (None or partial, problems).

    A shard that fails it is left out of `paths`, so nothing reads its data afterwards (`kbh verify` would
    otherwise follow external storage into a FIFO or /dev/zero)."""
    from .manifest import MANIFEST_FILE, compute_manifest_id, read_manifest
    from .shards import SHARD_RE, SHARD_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        return None, [f"{folder}: no such shard folder (make one with `kbh split`)"]
    try:
        manifest = read_manifest(folder / MANIFEST_FILE)
    except KbhError as e:
        return None, [f"{e} (an incomplete or foreign split folder)"]
    problems: list[str] = []
    mid = str(manifest.get("manifest_id"))
    if compute_manifest_id(manifest) != mid:
        problems.append(f"{folder / MANIFEST_FILE}: content does not match its manifest_id {mid} (edited?)")
    sf = SplitFolder(folder, manifest)
    listed: set[str] = set()
    owner: dict[str, str] = {}
    size = manifest.get("image_size")
    size = tuple(size) if isinstance(size, list) and len(size) == 2 else None
    for split, entry in manifest["splits"].items():
        for p in entry.get("persons", []):
            if owner.setdefault(p, split) != split:
                problems.append(f"{folder / MANIFEST_FILE}: person {p!r} is listed in {owner[p]} and {split}")
        shards = entry.get("shards", [])
        ids: list[str] = []
        sf.paths[split] = []
        for s in shards:
            name = s["file"]
            m = SHARD_RE.match(name)
            if m is None or m["split"] != split or Path(name).name != name:
                problems.append(f"{folder / MANIFEST_FILE}: shard name {name!r} under {split!r} is not a plain "
                                f"{split}-NNNNN.h5 name in the folder")
                continue
            listed.add(name)
            path = folder / name
            if path.is_symlink() or not path.is_file():
                problems.append(f"{path}: a link, not a shard file" if path.is_symlink() else
                                f"{path}: missing shard ({split}, {s.get('frames')} frames)")
                continue
            if "bytes" in s and path.stat().st_size != s["bytes"]:
                problems.append(f"{path}: {path.stat().st_size} bytes, the manifest says {s['bytes']} "
                                f"(replaced or truncated)")
                continue
            found = _check_shard(path, split, s["frames"], mid, size, owner)
            problems += found.problems
            if not found.problems:
                ids += found.ids
                sf.paths[split].append(path)
        if "frame_ids" in entry and len(sf.paths[split]) == len(shards) and ids != list(entry["frame_ids"]):
            problems.append(f"{folder}: {split} frame ids in the shards differ from the manifest's "
                            f"({len(ids)} in files, {len(entry['frame_ids'])} listed)")
    for p in sorted(folder.iterdir()):
        if p.name != MANIFEST_FILE and p.name not in listed and (SHARD_RE.match(p.name) or
                                                                  p.suffix.lower() in SHARD_SUFFIXES):
            problems.append(f"{p}: not listed in the manifest (a leftover or foreign shard)")
    return sf, problems


@dataclass
class _ShardCheck:
    problems: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


def _check_shard(path: Path, split: str, frames: int, mid: str, size, owner: dict) -> _ShardCheck:
    """One shard's structure: its own bytes only, the datasets and shapes the reader expects, the manifest's id,
    split and frame count, frame ids, persons in one split. Reads attributes and the small columns only."""
    import h5py
    import numpy as np

    from .shards import COLUMNS, foreign_storage

    out = _ShardCheck()
    try:
        with h5py.File(path, "r") as f:
            if foreign := foreign_storage(f):
                out.problems += [f"{path}: {p}" for p in foreign]
                return out
            n = frames
            want = {"images": (4, np.uint8), "masks": (3, np.uint8)}
            for name in ("images", "masks", *COLUMNS):
                ds = f.get(name)
                if not isinstance(ds, h5py.Dataset):
                    out.problems.append(f"{path}: no dataset {name!r}")
                    continue
                if ds.shape[:1] != (n,):
                    out.problems.append(f"{path}: {name} holds {ds.shape[0] if ds.shape else 0} frames, the "
                                        f"manifest says {n}")
                if name in want and (ds.ndim != want[name][0] or ds.dtype != want[name][1]):
                    out.problems.append(f"{path}: {name} is {ds.dtype} {ds.shape}, not the shard layout")
            if out.problems:
                return out
            images, masks = f["images"], f["masks"]
            if images.shape[3] != 3 or masks.shape[1:] != images.shape[1:3]:
                out.problems.append(f"{path}: images {images.shape} and masks {masks.shape} do not match")
            if size and tuple(images.shape[1:3]) != size:
                out.problems.append(f"{path}: frames are {images.shape[1]}x{images.shape[2]}, the manifest says "
                                    f"{size[0]}x{size[1]}")
            if str(f.attrs.get("manifest_id")) != mid:
                out.problems.append(f"{path}: manifest_id {f.attrs.get('manifest_id')} is not the manifest's {mid} "
                                    f"(from another split)")
            if str(f.attrs.get("split")) != split:
                out.problems.append(f"{path}: split attribute {f.attrs.get('split')!r}, listed under {split!r}")
            out.ids = list(f["frame_id"].asstr()[:])
            f["sequence_id"].asstr()[:]  # read once here, so a damaged column is named now, not mid-training
            for p in set(f["person_id"].asstr()[:]):
                if owner.setdefault(p, split) != split:
                    out.problems.append(f"{path}: person {p!r} is also in {owner[p]}")
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as e:
        out.problems.append(f"{path}: not a readable kbh shard ({str(e).splitlines()[0][:100]})")
    return out


def open_split_folder(folder: str | Path) -> SplitFolder:
    """The checked folder, or a KbhError naming the first problem (and how many there are)."""
    sf, problems = check_split_folder(folder)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); `kbh verify {folder}` lists them)" if len(problems) > 1 \
            else ""
        raise KbhError(f"refusing {folder}: {problems[0]}{more}")
    return sf
