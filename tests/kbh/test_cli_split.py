"""`kbh split`, `kbh verify`, `kbh manifest-from-lists` end to end through the command line."""

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from kbh.cli import main
from kbh.manifest import read_manifest
from kbh.shards import ShardReader, list_shards
from kbh.workspace import Workspace
from tests.helpers import make_ws

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
HGR1 = DATA / "hgr1"


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_split_verify_by_person(tmp_path, capsys):
    ws = make_ws(tmp_path / "ws", {f"p{i}": {f"p{i}a": 2 + i, f"p{i}b": 3} for i in range(6)})
    rc, out, err = run(capsys, "split", ws, "--by-person", "20/20/60", "--seed", "3", "--out", tmp_path / "out",
                       "--size", "12x16", "--name", "tiny", "--no-progress")
    assert rc == 0, err
    assert re.search(r"train\s+1\s+2\s+\d+\s+20\.0%", out) and "worst frame-ratio deviation" in out
    m = read_manifest(tmp_path / "out" / "manifest.json")
    assert m["seed"] == 3 and m["requested_ratios"] == {"train": 0.2, "val": 0.2, "test": 0.6}
    assert m["image_size"] == [12, 16] and sum(e["frame_count"] for e in m["splits"].values()) == sum(2 + i for i in range(6)) + 6 * 3 == 45
    rc, out, _ = run(capsys, "verify", tmp_path / "out")
    assert rc == 0 and out.startswith("OK ") and "45 frames" in out
    # Same seed and name: the same split and the same manifest id, in another folder.
    rc, _, _ = run(capsys, "split", ws, "--by-person", "20/20/60", "--seed", "3", "--out", tmp_path / "out2",
                   "--size", "12x16", "--name", "tiny", "--no-progress")
    m2 = read_manifest(tmp_path / "out2" / "manifest.json")
    assert m2["manifest_id"] == m["manifest_id"]
    assert {k: e["persons"] for k, e in m2["splits"].items()} == {k: e["persons"] for k, e in m["splits"].items()}


def test_split_refuses_existing_then_overwrites(tmp_path, capsys):
    ws = make_ws(tmp_path / "ws", {f"p{i}": {f"s{i}": 3} for i in range(4)})
    args = ["split", ws, "--by-person", "50/50", "--out", tmp_path / "out", "--size", "8x8", "--no-progress"]
    assert run(capsys, *args)[0] == 0
    (tmp_path / "out" / "train-00007.h5").write_bytes(b"stale")
    rc, _, err = run(capsys, *args)
    assert rc == 2 and "already holds a split" in err and "--overwrite" in err
    rc, _, err = run(capsys, *args, "--overwrite")
    assert rc == 0, err
    assert not (tmp_path / "out" / "train-00007.h5").exists()
    assert run(capsys, "verify", tmp_path / "out")[0] == 0


@pytest.mark.parametrize("ratios, words", [
    ("20/20/50", "sum to 90, not 100"),
    ("10/10/10/70", "give 2"),
    ("20/20/60", "2 group(s) cannot fill 3 non-empty splits"),
])
def test_split_bad_input(tmp_path, capsys, ratios, words):
    ws = make_ws(tmp_path / "ws", {"a": {"a1": 2}, "b": {"b1": 2}})
    rc, _, err = run(capsys, "split", ws, "--by-person", ratios, "--out", tmp_path / "out", "--no-progress")
    assert rc == 2 and err.startswith("kbh: error: ") and words in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_split_no_eligible_frames(tmp_path, capsys):
    ws = make_ws(tmp_path / "ws", {"a": {"a1": 3}, "b": {"b1": 2}}, status=None)
    with Workspace.open(ws) as w:
        w.set_status(w.frames()[0].id, "in_progress")
    rc, _, err = run(capsys, "split", ws, "--by-person", "50/50", "--out", tmp_path / "out", "--no-progress")
    assert rc == 2 and "no eligible frames" in err
    assert "4 status unlabeled" in err and "1 status in_progress" in err


def test_split_bad_size_and_workspace(tmp_path, capsys):
    rc, _, err = run(capsys, "split", tmp_path / "nows", "--by-person", "50/50", "--out", tmp_path / "o")
    assert rc == 2 and "not a kbh workspace" in err
    rc, _, err = run(capsys, "split", tmp_path / "nows", "--by-person", "50/50", "--out", tmp_path / "o",
                     "--size", "big")
    assert rc == 2 and "HEIGHTxWIDTH" in err


def test_split_by_sequence_keeps_persons_disjoint(tmp_path, capsys):
    # one sequence per person: sequences are the unit and persons stay disjoint
    ws = make_ws(tmp_path / "ws", {f"p{i}": {f"s{i}": 2 + i} for i in range(4)})
    rc, out, err = run(capsys, "split", ws, "--by-sequence", "50/50", "--out", tmp_path / "out", "--size", "8x8",
                       "--no-progress")
    assert rc == 0, err
    m = read_manifest(tmp_path / "out" / "manifest.json")
    assert m["unit"] == "sequence"
    assert not set(m["splits"]["train"]["persons"]) & set(m["splits"]["test"]["persons"])
    assert run(capsys, "verify", tmp_path / "out")[0] == 0
    # a person with two sequences that would land in both splits: refused, nothing written
    ws2 = make_ws(tmp_path / "ws2", {"a": {"a1": 4, "a2": 4}})
    rc, _, err = run(capsys, "split", ws2, "--by-sequence", "50/50", "--out", tmp_path / "out2", "--size", "8x8",
                     "--no-progress")
    assert rc == 2 and "persons are never split" in err and "'a'" in err
    assert not (tmp_path / "out2" / "manifest.json").exists()


def test_verify_cli_reports_failure(tmp_path, capsys):
    ws = make_ws(tmp_path / "ws", {f"p{i}": {f"s{i}": 2} for i in range(3)})
    assert run(capsys, "split", ws, "--by-person", "30/30/40", "--out", tmp_path / "out", "--size", "8x8",
               "--no-progress")[0] == 0
    (tmp_path / "out" / "test-00000.h5").unlink()
    rc, out, _ = run(capsys, "verify", tmp_path / "out")
    assert rc == 1 and "FAIL: " in out and "missing shard" in out
    rc, _, err = run(capsys, "verify", tmp_path / "nothing")
    assert rc == 2 and "not a folder" in err


def test_manifest_from_lists_cli(tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    for name, lines in (("train", ["1_10/00001"]), ("val", ["2_20/00002"]), ("test", ["3_30/00003"])):
        (lists / f"{name}.txt").write_text("\n".join(lines) + "\n")
    rc, out, err = run(capsys, "manifest-from-lists", lists, "--out", tmp_path / "m.json", "--name", "tiny")
    assert rc == 0, err
    assert "tiny" in out and "paper: test" in out
    assert read_manifest(tmp_path / "m.json")["splits"]["val"]["frame_ids"] == ["2_20/00002"]


def test_reproduce_published_kbh_split_from_kbh_layout(tmp_path, capsys):
    """A fabricated folder in the KBH layout whose frames are a subset of the published lists, plus one frame
    the lists do not name: every listed frame lands in its published split, the other is left out."""
    published = read_manifest(REPO / "data_manifests" / "kbh-2019.json")
    picked = {s: e["frame_ids"][:: max(1, len(e["frame_ids"]) // 3)][:3] for s, e in published["splits"].items()}
    extra = "999_123456/00001"
    kbh = tmp_path / "KBH"
    rng = np.random.default_rng(0)
    for key in [k for ks in picked.values() for k in ks] + [extra]:
        folder, frame = key.split("/")
        (kbh / folder).mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (23, 30, 3), dtype=np.uint8)
        cv2.imwrite(str(kbh / folder / f"{frame}_halfres.jpg"), img)
        mask = np.zeros((23, 30), np.uint8)
        mask[8:, 10:20] = 255
        cv2.imwrite(str(kbh / folder / f"{frame}_mask.png"), mask)
    ws = tmp_path / "ws"
    assert run(capsys, "init", ws)[0] == 0
    rc, _, err = run(capsys, "import", ws, kbh, "--layout", "kbh", "--quiet")
    assert rc == 0, err
    rc, out, err = run(capsys, "split", ws, "--manifest", REPO / "data_manifests" / "kbh-2019.json",
                       "--out", tmp_path / "out", "--size", "23x30", "--no-progress")
    assert rc == 0, err
    assert "1 frames (not in the manifest)" in out and "manifest frames missing from the workspace: 12527" in out
    m = read_manifest(tmp_path / "out" / "manifest.json")
    assert m["reproduces"] == {"name": "kbh-2019", "manifest_id": published["manifest_id"]}
    assert m["splits"]["test"]["paper_name"] == "train"
    for split, keys in picked.items():
        reader = ShardReader(list_shards(tmp_path / "out", split))
        got = sorted(reader[i]["frame_id"] for i in range(len(reader)))
        assert got == sorted(keys), split
        assert all(reader[i]["mask"].max() == 1 for i in range(len(reader)))
        reader.close()
    assert run(capsys, "verify", tmp_path / "out")[0] == 0


@pytest.mark.realdata
@pytest.mark.skipif(not HGR1.is_dir(), reason=f"HGR1 data not found at {HGR1}")
def test_hgr1_import_split_verify(tmp_path, capsys):
    """Done means: HGR1 (8 people, inverted masks) -> split 25/25/50 by person -> verify; hand = 1 in shards."""
    ws = tmp_path / "ws"
    assert run(capsys, "init", ws)[0] == 0
    rc, _, err = run(capsys, "import", ws, HGR1 / "images", "--masks", HGR1 / "masks", "--person-regex",
                     r"hgr1_(id\d+)", "--mask-invert", "--quiet")
    assert rc == 0, err
    rc, out, err = run(capsys, "split", ws, "--by-person", "25/25/50", "--seed", "0", "--out", tmp_path / "out",
                       "--size", "115x153", "--no-progress")
    assert rc == 0, err
    m = read_manifest(tmp_path / "out" / "manifest.json")
    assert [len(e["persons"]) for e in m["splits"].values()] == [2, 2, 4]
    assert sum(e["frame_count"] for e in m["splits"].values()) == 106
    assert run(capsys, "verify", tmp_path / "out")[0] == 0
    fractions = []
    for split in m["splits"]:
        reader = ShardReader(list_shards(tmp_path / "out", split))
        fractions += [float(reader[i]["mask"].mean()) for i in range(len(reader))]
        reader.close()
    # A hand and forearm in a photograph: neither nothing nor everything (inverted masks would give > 0.5).
    assert 0.03 < np.median(fractions) < 0.45 and min(fractions) > 0.005 and max(fractions) < 0.8


def test_split_manifest_bad_inputs(tmp_path, capsys):
    ws = make_ws(tmp_path / "ws", {"a": {"a1": 2}, "b": {"b1": 2}})
    (tmp_path / "junk.json").write_text("[1, 2]")
    rc, _, err = run(capsys, "split", ws, "--manifest", tmp_path / "junk.json", "--out", tmp_path / "o")
    assert rc == 2 and "junk.json: not a kbh manifest" in err
    rc, _, err = run(capsys, "split", ws, "--manifest", REPO / "data_manifests" / "kbh-2019.json",
                     "--out", tmp_path / "o", "--no-progress")
    assert rc == 2 and "none of the 4 workspace frames is listed in manifest kbh-2019" in err
