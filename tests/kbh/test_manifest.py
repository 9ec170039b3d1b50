"""kbh.manifest: ids, reading errors, the published KBH split built from its list files."""

import json
from pathlib import Path

import pytest

from kbh.errors import KbhError
from kbh.manifest import (build_manifest, compute_manifest_id, manifest_from_lists, read_manifest, split_of_keys,
                          with_shards, write_manifest)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
KBH_LISTS = DATA / "kbh-2019-split"


def small_manifest(**kw):
    splits = {"train": {"persons": {"a"}, "sequences": {"s1"}, "frame_ids": ["a_s1/00000", "a_s1/00001"]},
              "test": {"persons": {"b"}, "sequences": {"s2"}, "frame_ids": ["b_s2/00000"]}}
    return build_manifest(name="t", unit="person", algorithm="x", seed=0, requested={"train": 0.7, "test": 0.3},
                          splits=splits, source="/ws", image_size=(10, 20), **kw)


def test_build_fields_and_ratios():
    m = small_manifest()
    assert m["schema_version"] == 1 and m["name"] == "t" and m["created"] and m["tool_version"]
    assert m["splits"]["train"]["frame_count"] == 2 and m["splits"]["test"]["persons"] == ["b"]
    assert m["achieved_ratios"]["frames"] == {"train": round(2 / 3, 6), "test": round(1 / 3, 6)}
    assert m["achieved_ratios"]["persons"] == {"train": 0.5, "test": 0.5}
    assert len(m["manifest_id"]) == 16 and int(m["manifest_id"], 16) >= 0


def test_manifest_id_ignores_time_and_shards_but_not_content():
    a, b = small_manifest(), small_manifest()
    b["created"] = "2000-01-01T00:00:00+00:00"
    assert a["manifest_id"] == b["manifest_id"] == compute_manifest_id(b)
    c = with_shards(a, {"train": [{"file": "train-00000.h5", "frames": 2, "sha256": "0" * 64}]})
    assert compute_manifest_id(c) == a["manifest_id"]
    assert c["splits"]["train"]["shards"][0]["frames"] == 2 and c["splits"]["test"]["shards"] == []
    d = json.loads(json.dumps(a))
    d["splits"]["test"]["frame_ids"].append("b_s2/00001")
    assert compute_manifest_id(d) != a["manifest_id"]


def test_write_read_round_trip(tmp_path):
    m = small_manifest()
    write_manifest(tmp_path / "m.json", m)
    assert read_manifest(tmp_path / "m.json") == m


def test_read_errors(tmp_path):
    with pytest.raises(KbhError, match="no manifest"):
        read_manifest(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KbhError, match="bad.json: not a readable manifest"):
        read_manifest(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(KbhError, match="other.json: not a kbh manifest"):
        read_manifest(tmp_path / "other.json")


def test_split_of_keys_rejects_a_frame_in_two_splits():
    m = small_manifest()
    assert split_of_keys(m) == {"a_s1/00000": "train", "a_s1/00001": "train", "b_s2/00000": "test"}
    m["splits"]["test"]["frame_ids"].append("a_s1/00000")
    with pytest.raises(KbhError, match="a_s1/00000 is listed in train and test"):
        split_of_keys(m)


def write_lists(d: Path, train, val, test):
    d.mkdir()
    for name, lines in (("train", train), ("val", val), ("test", test), ("trainval", train + val)):
        (d / f"{name}.txt").write_text("\n".join(lines) + "\n")


def test_manifest_from_fabricated_lists(tmp_path):
    write_lists(tmp_path / "lists", ["1_100/00001", "1_100/00002", "2_200/00010"], ["3_300/00005"],
                ["4_400/00007", "5_500/00001"])
    m = manifest_from_lists(tmp_path / "lists")
    assert m["name"] == "kbh-2019" and m["unit"] == "person" and m["created"] is None
    assert m["splits"]["train"]["frame_ids"] == ["1_100/00001", "1_100/00002", "2_200/00010"]
    assert m["splits"]["train"]["persons"] == ["1", "2"] and m["splits"]["train"]["sequences"] == ["100", "200"]
    assert (m["splits"]["train"]["released_name"], m["splits"]["train"]["paper_name"]) == ("train", "test")
    assert (m["splits"]["test"]["released_name"], m["splits"]["test"]["paper_name"]) == ("test", "train")
    assert m["list_notes"] == ["trainval.txt (4 frames) equals train.txt + val.txt"]
    assert m["manifest_id"] == compute_manifest_id(m)


def test_manifest_from_lists_errors(tmp_path):
    write_lists(tmp_path / "l1", ["1_100/00001"], ["no-underscore/00001"], ["3_300/00001"])
    with pytest.raises(KbhError, match=r"val.txt:1: expected <person>_<sequence>/<frame>"):
        manifest_from_lists(tmp_path / "l1")
    (tmp_path / "l2").mkdir()
    with pytest.raises(KbhError, match="train.txt: missing list file"):
        manifest_from_lists(tmp_path / "l2")


@pytest.mark.skipif(not KBH_LISTS.is_dir(), reason=f"published KBH lists not found at {KBH_LISTS}")
def test_committed_kbh_2019_manifest_matches_the_released_lists():
    built = manifest_from_lists(KBH_LISTS)
    committed = read_manifest(REPO / "data_manifests" / "kbh-2019.json")
    assert committed["manifest_id"] == built["manifest_id"]
    assert committed["splits"] == built["splits"]
    counts = {k: (e["frame_count"], len(e["persons"]), len(e["sequences"])) for k, e in built["splits"].items()}
    assert counts == {"train": (7936, 30, 101), "val": (2300, 10, 30), "test": (2300, 10, 30)}
    persons = [set(e["persons"]) for e in built["splits"].values()]
    assert not (persons[0] & persons[1] or persons[0] & persons[2] or persons[1] & persons[2])
    assert built["list_notes"] == ["trainval.txt (10236 frames) equals train.txt + val.txt"]
