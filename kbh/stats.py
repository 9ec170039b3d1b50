"""`kbh stats`: what is in a workspace or a folder of shards."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .errors import KbhError
from .workspace import DB_NAME, STATUSES, Workspace


def workspace_stats(ws: Workspace, coverage: bool = True) -> dict:
    frames = ws.frames()
    persons = ws.persons()
    sequences = ws.sequences()
    by_status = Counter(f.status for f in frames)
    by_annotator: dict[str, dict] = defaultdict(lambda: {"frames": 0, "seconds": 0.0, "strokes": 0})
    for f in frames:
        if f.annotator:
            a = by_annotator[f.annotator]
            a["frames"] += 1
            a["seconds"] += f.seconds
            a["strokes"] += f.n_strokes
    frames_per_person = Counter(f.person_id for f in frames)
    out = {
        "kind": "workspace",
        "path": str(ws.root),
        "frames": len(frames),
        "persons": len(persons),
        "sequences": len(sequences),
        "frames_per_person": _spread(list(frames_per_person.values())),
        "by_status": {s: by_status.get(s, 0) for s in STATUSES},
        "by_source": dict(Counter(f.source for f in frames if f.source)),
        "by_annotator": {k: dict(v) for k, v in sorted(by_annotator.items())},
        "seconds_spent": float(sum(f.seconds for f in frames)),
        "predictions": ws.count_predicted_frames(),
        "person_attributes": _attribute_distribution(persons.values()),
        "sequence_attributes": _attribute_distribution(a for _, a in sequences.values()),
    }
    done = by_status.get("done", 0) + by_status.get("reviewed", 0)
    out["progress"] = done / len(frames) if frames else 0.0
    if coverage:
        cov = [float(m.mean()) for f in frames if (m := ws.mask(f)) is not None]
        out["mask_coverage"] = _spread(cov)
    return out


def shards_stats(folder: Path) -> dict:
    import h5py

    from .split_folder import open_split_folder

    # The check train and eval run: statistics of a folder they would refuse would describe the wrong data.
    checked = open_split_folder(folder)
    files = [p for paths in checked.paths.values() for p in paths]
    if not files:
        raise KbhError(f"{folder}: no .h5 shards")
    splits: dict[str, dict] = {}
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                split = str(f.attrs.get("split", path.stem.rsplit("-", 1)[0]))
                s = splits.setdefault(split, {"frames": 0, "persons": set(), "sequences": set(), "cov": []})
                n = f["masks"].shape[0]
                s["frames"] += n
                s["persons"].update(_strings(f["person_id"][:]))
                s["sequences"].update(_strings(f["sequence_id"][:]))
                for i in range(n):  # chunk per frame: streams, memory stays flat
                    s["cov"].append(float(f["masks"][i].mean()))
                size = f["masks"].shape[1:]
        except OSError as e:
            raise KbhError(f"{path}: not a readable HDF5 shard ({e})") from None
    total = sum(s["frames"] for s in splits.values())
    out = {"kind": "shards", "path": str(folder), "frames": total, "size": list(size), "splits": {}}
    manifest = folder / "manifest.json"
    if manifest.exists():
        out["manifest_id"] = json.loads(manifest.read_text()).get("manifest_id")
    for name, s in splits.items():
        out["splits"][name] = {
            "frames": s["frames"],
            "frame_ratio": s["frames"] / total if total else 0.0,
            "persons": len(s["persons"]),
            "sequences": len(s["sequences"]),
            "mask_coverage": _spread(s["cov"]),
        }
    out["persons"] = sum(v["persons"] for v in out["splits"].values())
    return out


def stats(path: str | Path, coverage: bool = True) -> dict:
    path = Path(path)
    if (path / DB_NAME).exists():
        with Workspace.open(path, readonly=True) as ws:
            return workspace_stats(ws, coverage)
    if path.is_dir():
        return shards_stats(path)
    raise KbhError(f"{path}: neither a workspace nor a folder of shards")


def format_stats(s: dict) -> str:
    lines = []
    if s["kind"] == "workspace":
        lines.append(f"workspace {s['path']}: {s['frames']} frames, {s['persons']} persons, "
                     f"{s['sequences']} sequences")
        fp = s["frames_per_person"]
        if fp["n"]:
            lines.append(f"  frames per person: mean {fp['mean']:.1f}, min {fp['min']:.0f}, max {fp['max']:.0f}")
        lines.append("  status: " + ", ".join(f"{k} {v}" for k, v in s["by_status"].items())
                     + f"  (progress {s['progress']:.1%})")
        if s["by_source"]:
            lines.append("  mask source: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_source"].items())))
        for name, a in s["by_annotator"].items():
            lines.append(f"  annotator {name}: {a['frames']} frames, {a['strokes']} strokes, "
                         f"{a['seconds'] / 60:.1f} min")
        lines.append(f"  time spent: {s['seconds_spent'] / 60:.1f} min; frames with predictions: {s['predictions']}")
        if "mask_coverage" in s and s["mask_coverage"]["n"]:
            c = s["mask_coverage"]
            lines.append(f"  mask coverage (hand fraction): mean {c['mean']:.1%}, min {c['min']:.1%}, "
                         f"max {c['max']:.1%} over {c['n']} masks")
        for title, key in (("person attributes", "person_attributes"), ("sequence attributes", "sequence_attributes")):
            if s[key]:
                lines.append(f"  {title}:")
                for attr, values in s[key].items():
                    lines.append(f"    {attr}: " + ", ".join(f"{v} {n}" for v, n in values.items()))
    else:
        lines.append(f"shards {s['path']}: {s['frames']} frames of {s['size'][0]}x{s['size'][1]} (HxW), "
                     f"{s['persons']} persons" + (f", manifest {s['manifest_id']}" if s.get("manifest_id") else ""))
        for name, sp in sorted(s["splits"].items(), key=lambda kv: ("train", "val", "test").index(kv[0])
                               if kv[0] in ("train", "val", "test") else 9):
            c = sp["mask_coverage"]
            lines.append(f"  {name:5s}: {sp['frames']:6d} frames ({sp['frame_ratio']:.1%}), {sp['persons']} persons, "
                         f"{sp['sequences']} sequences, hand covers {c['mean']:.1%} "
                         f"({c['min']:.1%}..{c['max']:.1%})")
    return "\n".join(lines)


def _spread(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "mean": 0.0, "min": 0.0, "max": 0.0}
    a = np.asarray(values, float)
    return {"n": int(a.size), "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


def _attribute_distribution(attr_dicts) -> dict[str, dict[str, int]]:
    dist: dict[str, Counter] = defaultdict(Counter)
    for attrs in attr_dicts:
        for k, v in attrs.items():
            dist[k][str(v)] += 1
    return {k: dict(sorted(c.items())) for k, c in sorted(dist.items())}


def _strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
