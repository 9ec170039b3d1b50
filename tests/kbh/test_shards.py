"""kbh.shards: writer/reader round trip, resizing, multi-file shards, pickling, and verify's four corruptions."""

import json
import pickle

import cv2
import h5py
import numpy as np
import pytest

from kbh.cli_split import split_workspace
from kbh.errors import KbhError
from kbh.manifest import read_manifest, write_manifest
from kbh.shards import (ShardReader, ShardWriter, list_shards, parse_compression, parse_size, read_attrs,
                        resize_pair, verify)
from kbh.workspace import Workspace
from tests.helpers import flip_byte_in_chunk


def make_ws(root, persons=4, seqs=2, frames=3, hw=(24, 32), seed=0):
    """A tiny labeled workspace: random images, blocky masks; frame index 0 of each sequence left unlabeled."""
    rng = np.random.default_rng(seed)
    ws = Workspace.init(root)
    h, w = hw
    for p in range(persons):
        for s in range(seqs):
            sid = f"p{p}s{s}"
            ws.upsert_sequence(sid, f"p{p}")
            with ws.transaction():
                for i in range(frames + p):  # uneven frames per person
                    ws.add_image(sid, i, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for fr in ws.frames(sequence=sid):
                if fr.frame_index > 0:
                    m = np.zeros((h, w), np.uint8)
                    m[rng.integers(0, h // 2):, rng.integers(0, w // 2):] = 1
                    ws.save_annotation(fr.id, mask=m, status="done", source="import")
    return ws


def test_parse_size_and_compression():
    assert parse_size("230x306") == (230, 306)
    assert parse_compression("gzip:4") == ("gzip", 4)
    assert parse_compression("lzf") == ("lzf", None)
    for bad in ("230", "0x5", "axb"):
        with pytest.raises(KbhError, match="HEIGHTxWIDTH"):
            parse_size(bad)
    with pytest.raises(KbhError, match="gzip"):
        parse_compression("zstd")


def test_resize_keeps_mask_binary_and_picks_interpolation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = (rng.random((40, 60)) > 0.5).astype(np.uint8)
    for size in ((20, 30), (57, 83)):  # shrink and grow
        im2, m2 = resize_pair(img, mask, size)
        assert im2.shape == (*size, 3) and im2.dtype == np.uint8
        assert m2.shape == size and set(np.unique(m2)) <= {0, 1}
    im2, _ = resize_pair(img, mask, (20, 30))
    assert np.array_equal(im2, cv2.resize(img, (30, 20), interpolation=cv2.INTER_AREA))
    im3, _ = resize_pair(img, mask, (80, 120))
    assert np.array_equal(im3, cv2.resize(img, (120, 80), interpolation=cv2.INTER_LINEAR))
    # Exactly 2x nearest: every source pixel becomes a 2x2 block.
    _, m3 = resize_pair(img, mask, (80, 120))
    assert np.array_equal(m3[::2, ::2], mask)


def test_writer_reader_round_trip_multi_file(tmp_path):
    rng = np.random.default_rng(1)
    h, w = 12, 16
    frames = [(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (rng.random((h, w)) > 0.5).astype(np.uint8))
              for _ in range(7)]
    # 3 frames per file: h*w*4 bytes per frame.
    with ShardWriter(tmp_path, "train", (h, w), 7, "abc123", "/ws", ("gzip", 1), max_bytes=3 * h * w * 4) as wr:
        for i, (im, m) in enumerate(frames):
            wr.add(im, m, f"p{i % 2}_s/{i:05d}", f"p{i % 2}", "s", i)
    assert [s["file"] for s in wr.shards] == ["train-00000.h5", "train-00001.h5", "train-00002.h5"]
    assert [s["frames"] for s in wr.shards] == [3, 3, 1]
    paths = list_shards(tmp_path, "train")
    assert [p.name for p in paths] == [s["file"] for s in wr.shards]
    assert not list(tmp_path.glob(".*"))  # no temporary files left
    attrs = read_attrs(paths[0])
    assert attrs["schema_version"] == 1 and attrs["split"] == "train" and attrs["manifest_id"] == "abc123"
    assert (attrs["height"], attrs["width"]) == (h, w) and attrs["source"] == "/ws"
    with h5py.File(paths[0]) as f:
        assert f["images"].chunks == (1, h, w, 3) and f["images"].fletcher32 and f["masks"].fletcher32
        assert f["images"].compression == "gzip" and f["masks"].chunks == (1, h, w)
        assert f["frame_index"].dtype == np.int64 and f["orig_height"].dtype == np.int32
        assert list(f["orig_width"][:]) == [w] * 3
    reader = ShardReader(paths)
    assert len(reader) == 7 and reader.manifest_id == "abc123"
    clone = pickle.loads(pickle.dumps(reader))  # picklable before first access
    for i, (im, m) in enumerate(frames):
        item = clone[i]
        assert np.array_equal(item["image"], im) and np.array_equal(item["mask"], m)
        assert item["frame_id"] == f"p{i % 2}_s/{i:05d}" and item["person_id"] == f"p{i % 2}"
        assert item["sequence_id"] == "s" and item["frame_index"] == i
    assert reader[-1]["frame_index"] == 6
    pickle.dumps(reader)  # still picklable after access (handles dropped)
    with pytest.raises(IndexError):
        reader[7]
    reader.close()
    clone.close()


def test_writer_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, "val", (8, 8), 3, "x", "ws") as wr:
            wr.add(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), "a_b/00000", "a", "b", 0)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    ws = make_ws(root / "ws")
    split_workspace(ws, root / "out", ratios=(0.25, 0.25, 0.5), seed=0, size=(20, 30), progress=False)
    ws.close()
    return root / "out"


def copy_split(split_dir, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(split_dir, dst)
    return dst


def test_split_shards_content(split_dir, tmp_path):
    ws = Workspace.open(split_dir.parent / "ws")
    m = read_manifest(split_dir / "manifest.json")
    seen = []
    for split, entry in m["splits"].items():
        reader = ShardReader(list_shards(split_dir, split))
        assert reader.manifest_id == m["manifest_id"]
        assert len(reader) == entry["frame_count"]
        for i in range(len(reader)):
            item = reader[i]
            fr = ws.frame_by_key(item["frame_id"])
            assert item["person_id"] in entry["persons"] and fr.person_id == item["person_id"]
            want_im, want_m = resize_pair(ws.image(fr), ws.mask(fr), (20, 30))
            assert np.array_equal(item["image"], want_im) and np.array_equal(item["mask"], want_m)
            seen.append(item["frame_id"])
        reader.close()
    labeled = [fr.key for fr in ws.frames(status="done")]
    assert sorted(seen) == sorted(labeled)  # every eligible frame exactly once
    assert m["left_out"] == {"status unlabeled": 8}
    ws.close()
    assert verify(split_dir).ok


def test_verify_changed_byte(split_dir, tmp_path):
    d = copy_split(split_dir, tmp_path)
    flip_byte_in_chunk(d / "test-00000.h5", "images", 1)
    rep = verify(d)
    assert not rep.ok
    text = "\n".join(rep.problems)
    assert "test-00000.h5: sha256" in text and "differs from the manifest" in text
    assert "images[1]" in text and "checksum" in text


def test_verify_missing_shard(split_dir, tmp_path):
    d = copy_split(split_dir, tmp_path)
    (d / "val-00000.h5").unlink()
    rep = verify(d)
    assert any("val-00000.h5: missing shard" in p for p in rep.problems)


def test_verify_count_mismatch(split_dir, tmp_path):
    d = copy_split(split_dir, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["splits"]["train"]["shards"][0]["frames"] += 1
    write_manifest(d / "manifest.json", m)
    rep = verify(d)
    assert any("train-00000.h5: images holds" in p and "the manifest says" in p for p in rep.problems)


def test_verify_person_in_two_splits(split_dir, tmp_path):
    d = copy_split(split_dir, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    # Rewrite a val shard's person column so one of train's persons appears in val, and fix up the hash so only
    # the person check can fail.
    intruder = m["splits"]["train"]["persons"][0]
    path = d / "val-00000.h5"
    with h5py.File(path, "r+") as f:
        f["person_id"][0] = intruder
    from kbh.imageio import sha256_file

    m["splits"]["val"]["shards"][0]["sha256"] = sha256_file(path)
    write_manifest(d / "manifest.json", m)
    rep = verify(d)
    assert rep.problems == [f"{path}: person {intruder!r} is also in train"]


def test_verify_edited_manifest(split_dir, tmp_path):
    d = copy_split(split_dir, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["seed"] = 99
    write_manifest(d / "manifest.json", m)
    assert any("does not match its manifest_id" in p for p in verify(d).problems)
