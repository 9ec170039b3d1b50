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
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

from .atomic_folder import recover, staged_folder
from .errors import KbhError
from .imageio import write_error


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def split_lock(target: str | Path):
    """Hold the target's writer lock, or fail at once with a one-line error if another process holds it."""
    target = Path(target)
    path = lock_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise (write_error(path, e) or KbhError(f"{path}: cannot open the split lock ({e.strerror})")) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            raise KbhError(f"{target}: another kbh split is writing this folder{holder} (lock {path.name}); "
                           f"wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (process {pid})"
    return ""


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
    target = Path(target)
    with split_lock(target):
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
    """The cheap structural check: (the folder, []) if it may be read, else (None or partial, problems)."""
    import h5py

    from .manifest import MANIFEST_FILE, compute_manifest_id, read_manifest
    from .shards import SHARD_RE, SHARD_SUFFIXES, foreign_storage

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
    for split, entry in manifest["splits"].items():
        for p in entry.get("persons", []):
            if owner.setdefault(p, split) != split:
                problems.append(f"{folder / MANIFEST_FILE}: person {p!r} is listed in {owner[p]} and {split}")
        shards = entry.get("shards", [])
        if not isinstance(shards, list):
            problems.append(f"{folder / MANIFEST_FILE}: split {split!r} has a malformed shard list")
            continue
        ids: list[str] = []
        sf.paths[split] = []
        for s in shards:
            name = s.get("file") if isinstance(s, dict) else None
            m = SHARD_RE.match(name) if isinstance(name, str) else None
            if m is None or m["split"] != split or Path(name).name != name:
                problems.append(f"{folder / MANIFEST_FILE}: shard name {name!r} under {split!r} is not a plain "
                                f"{split}-NNNNN.h5 name in the folder")
                continue
            listed.add(name)
            path = folder / name
            if not path.is_file() or path.is_symlink():
                problems.append(f"{path}: missing shard ({split}, {s.get('frames')} frames)"
                                if not path.is_symlink() else f"{path}: a link, not a shard file")
                continue
            if "bytes" in s and path.stat().st_size != int(s["bytes"]):
                problems.append(f"{path}: {path.stat().st_size} bytes, the manifest says {s['bytes']} "
                                f"(replaced or truncated)")
                continue
            try:
                with h5py.File(path, "r") as f:
                    problems += [f"{path}: {p}" for p in foreign_storage(f)]
                    n = len(f["images"])
                    if str(f.attrs.get("manifest_id")) != mid:
                        problems.append(f"{path}: manifest_id {f.attrs.get('manifest_id')} is not the "
                                        f"manifest's {mid} (from another split)")
                    if str(f.attrs.get("split")) != split:
                        problems.append(f"{path}: split attribute {f.attrs.get('split')!r}, listed under {split!r}")
                    if n != int(s.get("frames", -1)):
                        problems.append(f"{path}: holds {n} frames, the manifest says {s.get('frames')}")
                    if size and tuple(f["images"].shape[1:3]) != tuple(size):
                        problems.append(f"{path}: frames are {f['images'].shape[1:3]}, the manifest says {size}")
                    ids += list(f["frame_id"].asstr()[:])
                    for p in set(f["person_id"].asstr()[:]):
                        if owner.setdefault(p, split) != split:
                            problems.append(f"{path}: person {p!r} is also in {owner[p]}")
            except (OSError, KeyError, ValueError, TypeError) as e:
                problems.append(f"{path}: not a readable kbh shard ({str(e).splitlines()[0][:100]})")
                continue
            sf.paths[split].append(path)
        if "frame_ids" in entry and len(sf.paths[split]) == len(shards) and ids != list(entry["frame_ids"]):
            problems.append(f"{folder}: {split} frame ids in the shards differ from the manifest's "
                            f"({len(ids)} in files, {len(entry['frame_ids'])} listed)")
    for p in sorted(folder.iterdir()):
        if p.name != MANIFEST_FILE and p.name not in listed and (SHARD_RE.match(p.name) or
                                                                  p.suffix.lower() in SHARD_SUFFIXES):
            problems.append(f"{p}: not listed in the manifest (a leftover or foreign shard)")
    return sf, problems


def open_split_folder(folder: str | Path) -> SplitFolder:
    """The checked folder, or a KbhError naming the first problem (and how many there are)."""
    sf, problems = check_split_folder(folder)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); `kbh verify {folder}` lists them)" if len(problems) > 1 \
            else ""
        raise KbhError(f"refusing {folder}: {problems[0]}{more}")
    return sf
