"""Split manifests (`DIR/manifest.json`, `data_manifests/NAME.json`): build, identify, read, write.

A manifest says which frames (by workspace key "<person>_<sequence>/<index:05d>") belong to which split, how
the split was made, and (for a split folder) which shard files hold them with their sha256.

`manifest_id` is the first 16 hex digits of the sha256 of the canonical JSON of the manifest *without* the
fields that do not define the split: the id itself, `created`, `tool_version`, `source`, `left_out`, `missing`
and each split's `shards` block. So the same split of the same frames gets the same id on every run, and every
shard file carries it in its attrs (written before the shard hashes are known).
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
from pathlib import Path

from .errors import KbhError
from .atomic_file import atomic_write_bytes

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1
ID_EXCLUDED_TOP = ("manifest_id", "created", "tool_version", "source", "left_out", "missing")
ID_EXCLUDED_SPLIT = ("shards",)
REQUIRED = ("name", "schema_version", "manifest_id", "splits")


def compute_manifest_id(manifest: dict) -> str:
    content = {k: v for k, v in manifest.items() if k not in ID_EXCLUDED_TOP}
    content["splits"] = {
        name: {k: v for k, v in entry.items() if k not in ID_EXCLUDED_SPLIT}
        for name, entry in manifest.get("splits", {}).items()
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def build_manifest(*, name: str, unit: str, algorithm: str, seed: int | None, requested: dict[str, float] | None,
                   splits: dict[str, dict], source: str | None = None, image_size: tuple[int, int] | None = None,
                   left_out: dict | None = None, extra: dict | None = None) -> dict:
    """`splits`: name -> {"persons": [...], "sequences": [...], "frame_ids": [...], + optional extra fields}.

    Fills frame counts and achieved person/sequence/frame ratios, stamps the time and tool version, and
    computes the manifest id. Shard blocks are added later with `with_shards`.
    """
    from . import __version__

    total = sum(len(s["frame_ids"]) for s in splits.values()) or 1
    n_persons = sum(len(s["persons"]) for s in splits.values()) or 1
    n_seqs = sum(len(s["sequences"]) for s in splits.values()) or 1
    out_splits = {}
    for split, s in splits.items():
        entry = dict(s)
        entry["persons"] = sorted(s["persons"])
        entry["sequences"] = sorted(s["sequences"])
        entry["frame_ids"] = list(s["frame_ids"])
        entry["frame_count"] = len(s["frame_ids"])
        out_splits[split] = entry
    m = {
        "name": name,
        "schema_version": SCHEMA_VERSION,
        "created": now_iso(),
        "tool_version": __version__,
        "unit": unit,
        "split_algorithm": algorithm,
        "seed": seed,
        "requested_ratios": requested,
        "achieved_ratios": {
            "frames": {k: round(len(v["frame_ids"]) / total, 6) for k, v in splits.items()},
            "persons": {k: round(len(v["persons"]) / n_persons, 6) for k, v in splits.items()},
            "sequences": {k: round(len(v["sequences"]) / n_seqs, 6) for k, v in splits.items()},
        },
        "image_size": list(image_size) if image_size else None,
        "source": source,
        "left_out": left_out or {},
        **(extra or {}),
        "splits": out_splits,
    }
    m["manifest_id"] = compute_manifest_id(m)
    return m


def with_shards(manifest: dict, shards: dict[str, list[dict]]) -> dict:
    """A copy with each split's shard list ({"file", "frames", "sha256"}); the manifest id is unchanged."""
    m = copy.deepcopy(manifest)
    for split, entry in m["splits"].items():
        entry["shards"] = list(shards.get(split, []))
    return m


def write_manifest(path: str | Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KbhError(f"{path}: no manifest here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KbhError(f"{path}: not a readable manifest ({e.__class__.__name__}: {e})") from None
    if not isinstance(m, dict) or any(k not in m for k in REQUIRED) or not isinstance(m["splits"], dict):
        raise KbhError(f"{path}: not a kbh manifest (needs {', '.join(REQUIRED)})")
    if not isinstance(m["schema_version"], int):
        raise KbhError(f"{path}: schema_version {m['schema_version']!r} is not a number")
    if m["schema_version"] > SCHEMA_VERSION:
        raise KbhError(f"{path}: manifest schema version {m['schema_version']} is newer than this kbh supports")
    for split, entry in m["splits"].items():
        if why := _malformed(entry):
            raise KbhError(f"{path}: split {split!r} is malformed ({why})")
    return m


def _malformed(entry) -> str | None:
    """Why a split entry does not have the manifest's shape (field types), or None."""
    if not isinstance(entry, dict):
        return "not an object"
    for key in ("persons", "sequences", "frame_ids"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{key} must be a list of strings"
    if not isinstance(entry.get("frame_count", 0), int):
        return "frame_count must be a number"
    shards = entry.get("shards", [])
    if not isinstance(shards, list):
        return "shards must be a list"
    for s in shards:
        if not isinstance(s, dict) or not isinstance(s.get("file"), str):
            return "each shard needs a file name"
        for key, kind in (("frames", int), ("bytes", int), ("sha256", str)):
            if key in s and not isinstance(s[key], kind) or (key == "frames" and key not in s):
                return f"shard {s['file']!r}: {key} must be a {'number' if kind is int else 'string'}"
    return None


def split_of_keys(manifest: dict) -> dict[str, str]:
    """frame key -> split name; a key listed in two splits is an error."""
    out: dict[str, str] = {}
    for split, entry in manifest["splits"].items():
        for key in entry.get("frame_ids", []):
            if out.setdefault(key, split) != split:
                raise KbhError(f"manifest {manifest.get('name')}: frame {key} is listed in {out[key]} and {split}")
    return out


# -- the published KBH split ---------------------------------------------------------------------------------
# Which released list is which of our splits, and what the paper calls it. The released files (the code that
# produced the paper's numbers reads them) have train = 7,936 frames; the paper's Table 1 names that group "Test"
# and a 2,300-frame group "Train". Val is 2,300 in both, so we take the paper as having swapped train and test.
# Our splits use the released names (see docs/adr/0001-kbh-2019-split.md).
KBH_2019_SPLITS = {
    "train": {"released_file": "train.txt", "released_name": "train", "paper_name": "test"},
    "val": {"released_file": "val.txt", "released_name": "val", "paper_name": "val"},
    "test": {"released_file": "test.txt", "released_name": "test", "paper_name": "train"},
}


def parse_kbh_key(line: str, where: str) -> tuple[str, str, int]:
    """'50_202718019/00025' -> ('50', '202718019', 25)."""
    folder, slash, frame = line.partition("/")
    person, underscore, sequence = folder.partition("_")
    if not (slash and underscore and person and sequence and frame.isdigit()):
        raise KbhError(f"{where}: expected <person>_<sequence>/<frame>, got {line!r}")
    return person, sequence, int(frame)


def manifest_from_lists(listdir: str | Path, name: str = "kbh-2019") -> dict:
    """Build the published KBH split's manifest from the authors' train/val/test(/trainval) list files."""
    listdir = Path(listdir)
    splits: dict[str, dict] = {}
    for split, info in KBH_2019_SPLITS.items():
        path = listdir / info["released_file"]
        if not path.is_file():
            raise KbhError(f"{path}: missing list file")
        keys, persons, sequences = [], set(), set()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            person, sequence, frame = parse_kbh_key(line, f"{path}:{n}")
            keys.append(f"{person}_{sequence}/{frame:05d}")
            persons.add(person)
            sequences.add(sequence)
        splits[split] = {**info, "persons": persons, "sequences": sequences, "frame_ids": keys}
    notes = []
    trainval = listdir / "trainval.txt"
    if trainval.is_file():
        tv = [ln.strip() for ln in trainval.read_text(encoding="utf-8").splitlines() if ln.strip()]
        same = sorted(tv) == sorted(splits["train"]["frame_ids"] + splits["val"]["frame_ids"])
        notes.append(f"trainval.txt ({len(tv)} frames) {'equals' if same else 'DIFFERS FROM'} train.txt + val.txt")
    m = build_manifest(
        name=name, unit="person",
        algorithm="published: the list files released by the Recurrent U-Net authors (KBH, 2019)",
        seed=None, requested=None, splits=splits, source=None, image_size=None,
        extra={
            "naming": ("split names follow the released list files; the paper's Table 1 swaps train and test "
                       "(paper: Train 2,300 / Val 2,300 / Test 7,936). Each split records released_name and "
                       "paper_name. See docs/adr/0001-kbh-2019-split.md."),
            "list_notes": notes,
        },
    )
    m["created"] = None  # a published split: no creation time of ours, so the file is byte-stable
    return m
