"""HDF5 shards: writer (streamed, atomic), lazy reader, and verification against the manifest.

Layout (docs/ARCHITECTURE.md, "Shards"): `DIR/{split}-{k:05d}.h5`, each with `images` uint8
(N, H, W, 3), `masks` uint8 (N, H, W) {0,1}, one frame per chunk, compressed, fletcher32 checksums; 1-D columns
`frame_id`, `person_id`, `sequence_id` (utf-8 str), `frame_index` (int64), `orig_height`, `orig_width` (int32);
attrs `schema_version`, `split`, `manifest_id`, `source`, `height`, `width`.

Frames are streamed one at a time (never the whole dataset in memory): each shard is preallocated with its known
frame count, written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np

from .errors import KbhError
from .atomic_file import atomic_path
from .imageio import sha256_file

SCHEMA_VERSION = 1
# Chosen by benchmarks/bench_split.py (see benchmarks/RESULTS.md): on photographs gzip level 1 stores 44% of raw
# (level 4: 42%, lzf: 57%) at less write cost than higher levels, and gzip is a standard HDF5 filter (lzf is h5py's).
DEFAULT_COMPRESSION = ("gzip", 1)
DEFAULT_MAX_BYTES = 256 << 20  # raw bytes per shard file; each is built in memory (~110 MiB on photographs)
SHARD_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")  # any HDF5 file in a split folder must be a listed shard
SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<k>\d{5})\.h5$")
_STR = h5py.string_dtype("utf-8")
COLUMNS = ("frame_id", "person_id", "sequence_id", "frame_index", "orig_height", "orig_width")


def parse_size(text: str, min_side: int = 1) -> tuple[int, int]:
    """'230x306' -> (230, 306): height x width, each at least `min_side`."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m or int(m[1]) < min_side or int(m[2]) < min_side:
        least = f", each at least {min_side}" if min_side > 1 else ""
        raise KbhError(f"size {text!r}: expected HEIGHTxWIDTH{least}, e.g. 230x306")
    return int(m[1]), int(m[2])


def resize_pair(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize to size=(H, W): image with area averaging when shrinking, bilinear when growing; the mask with
    nearest neighbour so it stays {0, 1} (a smoothing filter would invent label values between 0 and 1)."""
    h, w = size
    if image.shape[:2] != (h, w):
        shrinking = h <= image.shape[0] and w <= image.shape[1]
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if mask.shape[:2] != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(image, dtype=np.uint8), (mask > 0).astype(np.uint8)


def compression_kwargs(compression) -> dict:
    """('gzip', 1) / ('lzf', None) / None -> h5py dataset keyword arguments."""
    if compression is None or compression == "none" or (isinstance(compression, tuple) and compression[0] == "none"):
        return {}
    name, level = compression if isinstance(compression, tuple) else (compression, None)
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4 if level is None else int(level)}
    if name == "lzf":
        return {"compression": "lzf"}
    raise KbhError(f"unknown compression {compression!r} (gzip[:LEVEL], lzf or none)")


def parse_compression(text: str):
    """'gzip:1' / 'gzip' / 'lzf' / 'none' -> the tuple `compression_kwargs` takes."""
    name, _, level = str(text).partition(":")
    if name not in ("gzip", "lzf", "none") or (level and (name != "gzip" or not level.isdigit() or int(level) > 9)):
        raise KbhError(f"compression {text!r}: expected gzip[:0-9], lzf or none")
    return (name, int(level) if level else None)


def shard_name(split: str, k: int) -> str:
    return f"{split}-{k:05d}.h5"


class ShardWriter:
    """Write one split's frames, in order, into `split-00000.h5`, `split-00001.h5`, ...

    `total` (the split's frame count) is known up front, so each file is preallocated; a file holds at most
    `max_bytes` of raw image+mask data. Use as a context manager; `shards` lists what was written
    ({"file", "frames", "bytes", "sha256"}).

    HDF5 builds each file in memory (at most one file's compressed bytes), and kbh writes it to disk with plain
    writes under a temporary name, renamed when complete. HDF5 itself never meets a full or read-only disk:
    after a failed write it cannot close or even free the file without crashing the process (a segmentation
    fault; docs/adr/0008). On an exception nothing is left on disk.
    """

    def __init__(self, out_dir: str | Path, split: str, size: tuple[int, int], total: int, manifest_id: str,
                 source: str, compression=DEFAULT_COMPRESSION, max_bytes: int = DEFAULT_MAX_BYTES):
        self.out_dir, self.split, self.size = Path(out_dir), split, tuple(size)
        self.total, self.manifest_id, self.source = int(total), manifest_id, str(source)
        self.kwargs = compression_kwargs(compression)
        h, w = self.size
        self.per_file = max(1, int(max_bytes) // (h * w * 4))
        self.shards: list[dict] = []
        self._written = 0
        self._file: h5py.File | None = None
        self._i = 0
        self._n = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._abort()

    def _open_next(self) -> None:
        k = len(self.shards)
        self._n = min(self.per_file, self.total - self._written)
        self._path = self.out_dir / shard_name(self.split, k)
        h, w = self.size
        # HDF5's in-memory driver (plain C, no Python callbacks); the name only has to be unique in the process.
        f = h5py.File(f"kbh-shard-{id(self)}-{k}", "w", driver="core", backing_store=False)
        n = self._n
        f.create_dataset("images", (n, h, w, 3), np.uint8, chunks=(1, h, w, 3), fletcher32=True, **self.kwargs)
        f.create_dataset("masks", (n, h, w), np.uint8, chunks=(1, h, w), fletcher32=True, **self.kwargs)
        for name in ("frame_id", "person_id", "sequence_id"):
            f.create_dataset(name, (n,), _STR)
        f.create_dataset("frame_index", (n,), np.int64)
        f.create_dataset("orig_height", (n,), np.int32)
        f.create_dataset("orig_width", (n,), np.int32)
        f.attrs.update({"schema_version": SCHEMA_VERSION, "split": self.split, "manifest_id": self.manifest_id,
                        "source": self.source, "height": h, "width": w})
        self._file, self._i = f, 0
        self._images, self._masks = f["images"], f["masks"]
        self._columns = {name: [] for name in COLUMNS}

    def add(self, image: np.ndarray, mask: np.ndarray, frame_id: str, person_id: str, sequence_id: str,
            frame_index: int) -> None:
        """Resize to the shard size and append one frame."""
        if self._written >= self.total:
            raise KbhError(f"split {self.split}: more frames than the {self.total} announced")
        if self._file is None:
            self._open_next()
        orig_h, orig_w = image.shape[:2]
        image, mask = resize_pair(image, mask, self.size)
        i = self._i
        self._images[i] = image
        self._masks[i] = mask
        # The small columns are buffered and written once per file (per-element HDF5 writes are slow).
        for name, value in zip(COLUMNS, (frame_id, person_id, sequence_id, int(frame_index), orig_h, orig_w)):
            self._columns[name].append(value)
        self._i += 1
        self._written += 1
        if self._i == self._n:
            self._finish()

    def _finish(self) -> None:
        for name, values in self._columns.items():
            self._file[name][:] = values
        self._file.flush()
        image = self._file.id.get_file_image()
        self._file.close()
        self._file = self._images = self._masks = None
        with atomic_path(self._path) as tmp:  # fsync + rename; a full or read-only disk is a KbhError here
            with open(tmp, "wb") as out:
                out.write(image)
        del image
        self.shards.append({"file": self._path.name, "frames": self._n, "bytes": self._path.stat().st_size,
                            "sha256": sha256_file(self._path)})

    def _abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
        self._file = self._images = self._masks = None

    def close(self) -> list[dict]:
        if self._written != self.total:
            self._abort()
            raise KbhError(f"split {self.split}: wrote {self._written} frames, expected {self.total}")
        return self.shards


def write_split_shards(ws, splits: dict[str, list], out_dir: str | Path, size: tuple[int, int], manifest_id: str,
                       compression=DEFAULT_COMPRESSION, max_bytes: int = DEFAULT_MAX_BYTES,
                       progress: bool = True) -> dict[str, list[dict]]:
    """Stream each split's frames (kbh.workspace.Frame lists) from the workspace into shards.

    Only one frame's image and mask are in memory at a time. Returns split -> shard list for the manifest.
    `out_dir` is a staging folder (see kbh.split_folder): the split appears only once it is complete.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    result: dict[str, list[dict]] = {}
    total = sum(len(v) for v in splits.values())
    with tqdm(total=total, desc="writing shards", unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        for split, frames in splits.items():
            if not frames:
                result[split] = []
                continue
            with ShardWriter(out_dir, split, size, len(frames), manifest_id, str(ws.root), compression,
                             max_bytes) as writer:
                for fr in frames:
                    image = ws.image(fr)
                    mask = ws.mask(fr)
                    if mask is None:
                        raise KbhError(f"{ws.root}: frame {fr.key} has status {fr.status} but no mask file")
                    if mask.shape != image.shape[:2]:
                        raise KbhError(f"{ws.root}: frame {fr.key}: mask {mask.shape} and image "
                                       f"{image.shape[:2]} differ in size")
                    writer.add(image, mask, fr.key, fr.person_id, fr.sequence_id, fr.frame_index)
                    bar.update(1)
            result[split] = writer.shards
    return result


# -- reading ---------------------------------------------------------------------------------------------------
def list_shards(folder: str | Path, split: str) -> list[Path]:
    """The shard files of one split, sorted by index."""
    folder = Path(folder)
    return sorted(p for p in folder.glob(f"{split}-*.h5") if (m := SHARD_RE.match(p.name)) and m["split"] == split)


class ShardReader:
    """Random access over one or more shard files as one sequence of frames.

    Opens the HDF5 files lazily on first access in the current process, so a reader can be pickled to
    DataLoader workers before use and each worker opens its own handles.
    """

    def __init__(self, paths):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not self.paths:
            raise KbhError("no shard files given")
        counts, ids = [], set()
        for p in self.paths:
            try:
                with h5py.File(p, "r") as f:
                    if foreign := foreign_storage(f):
                        raise KbhError(f"{p}: refused: {foreign[0]}")
                    counts.append(len(f["images"]))
                    ids.add(str(f.attrs.get("manifest_id", "")))
            except (OSError, KeyError) as e:
                raise KbhError(f"{p}: not a readable kbh shard ({_short(e)})") from None
        if len(ids) > 1:
            raise KbhError(f"{self.paths[0].parent}: shards from different manifests ({', '.join(sorted(ids))})")
        self.manifest_id = ids.pop()
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._files: list[h5py.File] | None = None
        self._cols: list[dict] | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"], state["_pid"], state["_cols"] = None, None, None  # h5py handles do not cross processes
        return state

    def _handles(self) -> list[h5py.File]:
        if self._files is None or self._pid != os.getpid():
            self._files = [h5py.File(p, "r") for p in self.paths]
            self._pid = os.getpid()
            # The id columns are small (a few bytes a frame): read them once instead of per item.
            self._cols = []
            for p, f in zip(self.paths, self._files):
                try:
                    self._cols.append({"frame_id": f["frame_id"].asstr()[:], "person_id": f["person_id"].asstr()[:],
                                       "sequence_id": f["sequence_id"].asstr()[:],
                                       "frame_index": f["frame_index"][:]})
                except (OSError, KeyError) as e:
                    raise KbhError(f"{p}: its frame columns cannot be read ({_short(e)}); run `kbh verify "
                                   f"{p.parent}`") from None
        return self._files

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self._offsets, i, side="right") - 1)
        f, j = self._handles()[k], i - int(self._offsets[k])
        cols = self._cols[k]
        try:
            image, mask = f["images"][j], f["masks"][j]
        except OSError as e:
            raise KbhError(f"{self.paths[k]}: frame {cols['frame_id'][j]} (#{j}) cannot be read ({_short(e)}); "
                           f"`kbh verify {self.paths[k].parent}` lists every damaged frame") from None
        return {
            "image": image,
            "mask": mask,
            "frame_id": str(cols["frame_id"][j]),
            "person_id": str(cols["person_id"][j]),
            "sequence_id": str(cols["sequence_id"][j]),
            "frame_index": int(cols["frame_index"][j]),
        }

    def close(self) -> None:
        for f in self._files or []:
            f.close()
        self._files, self._cols = None, None


# -- verification ----------------------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    frames: dict[str, int] = field(default_factory=dict)
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(folder: str | Path, check_chunks: bool = True) -> VerifyReport:
    """Everything the at-open check refuses (kbh.split_folder: manifest intact, exactly the listed shards, plain
    names, ids, sizes, counts, frame ids, persons in one split, no HDF5 feature that reads another file), plus
    every shard's sha256, sequences in one split, and (`check_chunks`) every chunk's fletcher32 checksum."""
    from .manifest import MANIFEST_FILE
    from .split_folder import check_split_folder

    folder = Path(folder)
    rep = VerifyReport()
    sf, rep.problems = check_split_folder(folder)
    if sf is None:
        return rep
    manifest = sf.manifest
    owners: dict[str, set] = {}
    for split, entry in manifest["splits"].items():
        want = int(entry.get("frame_count", 0))
        shards = [s for s in entry.get("shards", []) if isinstance(s, dict)]
        in_manifest = sum(int(s.get("frames", 0)) for s in shards)
        if in_manifest != want:
            rep.problems.append(f"{split}: manifest says {want} frames but its shards list {in_manifest}")
        for s in entry.get("sequences", []):
            owners.setdefault(s, set()).add(split)
        digests = {s.get("file"): s.get("sha256") for s in shards}
        rep.frames[split] = 0
        for path in sf.paths.get(split, []):
            rep.files += 1
            digest = sha256_file(path)
            if digest != digests.get(path.name):
                rep.problems.append(f"{path}: sha256 {digest[:12]}... differs from the manifest's "
                                    f"{str(digests.get(path.name))[:12]}... (file changed or corrupt)")
            rep.frames[split] += _check_file(path, owners, split, rep, check_chunks)
    for gid, splits in sorted(owners.items()):
        if len(splits) > 1:
            rep.problems.append(f"sequence {gid!r} is in more than one split ({', '.join(sorted(splits))})")
    listed = {s.get("file") for e in manifest["splits"].values() for s in e.get("shards", []) if isinstance(s, dict)}
    for p in sorted(folder.iterdir()):
        if p.name != MANIFEST_FILE and p.name not in listed and p.suffix.lower() not in SHARD_SUFFIXES:
            rep.notes.append(f"{p}: not part of the split (ignored)")
    return rep


def foreign_storage(f: h5py.File) -> list[str]:
    """What in an HDF5 file would read data from somewhere else: external or soft links, datasets with external
    storage, virtual datasets. A shard must hold its own bytes, or its checksums prove nothing."""
    out: list[str] = []

    def walk(group, prefix: str) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
                out.append(f"{prefix}{name} is an {type(link).__name__} (reads another place)")
                continue
            obj = group[name]
            if isinstance(obj, h5py.Group):
                walk(obj, f"{prefix}{name}/")
            elif isinstance(obj, h5py.Dataset):
                if obj.external:
                    out.append(f"dataset {prefix}{name} stores its data in external file(s)")
                if obj.is_virtual:
                    out.append(f"dataset {prefix}{name} is a virtual dataset (reads other files)")

    walk(f, "")
    return out


def _check_file(path, owners, split, rep, check_chunks) -> int:
    """Sequences of one shard (which passed the structural check), and (optionally) every chunk's checksum;
    returns its frame count."""
    try:
        with h5py.File(path, "r") as f:
            ids = list(f["frame_id"].asstr()[:])
            for s in set(f["sequence_id"].asstr()[:]):
                owners.setdefault(s, set()).add(split)
            if check_chunks:
                for name in ("images", "masks"):
                    ds = f[name]
                    for i in range(len(ds)):
                        try:
                            block = ds[i]
                        except OSError as e:
                            rep.problems.append(f"{path}: {name}[{i}] (frame {ids[i] if i < len(ids) else '?'}) "
                                                f"fails its checksum ({_short(e)})")
                            continue
                        if name == "masks" and block.max(initial=0) > 1:
                            rep.problems.append(f"{path}: masks[{i}] has values other than 0/1")
            return len(ids)
    except (OSError, KeyError, ValueError) as e:
        rep.problems.append(f"{path}: unreadable ({_short(e)})")
        return 0


def _short(e: Exception) -> str:
    text = str(e)
    return "fletcher32 checksum mismatch" if "fletcher32" in text.lower() else text.splitlines()[0][:120]


def read_attrs(path: str | Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
