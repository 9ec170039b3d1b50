"""Split folders cannot lie (issue 9): all-or-nothing splits, one writer, the check at every open, hostile files."""

import json
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from kbh.cli import main
from kbh.cli_split import split_workspace
from kbh.errors import KbhError
from kbh.imageio import sha256_file
from kbh.manifest import read_manifest, write_manifest
from kbh.shards import ShardReader, ShardWriter, verify
from kbh.atomic_folder import lock_path, writer_lock
from kbh.split_folder import open_split_folder
from kbh.workspace import Workspace
from tests.helpers import flip_byte_in_chunk, make_ws, mounted_tmpfs

LAYOUT = {f"p{i}": {f"s{i}": 3} for i in range(5)}


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def ws_path(tmp_path_factory):
    return make_ws(tmp_path_factory.mktemp("ws") / "ws", LAYOUT)


@pytest.fixture(scope="module")
def good_split(tmp_path_factory, ws_path):
    out = tmp_path_factory.mktemp("split") / "out"
    with Workspace.open(ws_path, readonly=True) as ws:
        split_workspace(ws, out, ratios=(0.4, 0.2, 0.4), seed=0, size=(32, 32), progress=False)  # unet-g fits
    return out


@pytest.fixture
def split_copy(good_split, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(good_split, dst)
    return dst


def refresh_manifest(folder):
    """Re-record every shard's size and hash, so that only the check under test can fail."""
    m = read_manifest(folder / "manifest.json")
    for entry in m["splits"].values():
        for s in entry["shards"]:
            p = folder / s["file"]
            s["bytes"], s["sha256"] = p.stat().st_size, sha256_file(p)
    write_manifest(folder / "manifest.json", m)


def refused_everywhere(folder, *words):
    """verify fails, the at-open check refuses (as train and eval call it), and both name the problem."""
    rep = verify(folder)
    assert not rep.ok
    assert any(all(w in p for w in words) for p in rep.problems), rep.problems
    with pytest.raises(KbhError, match="refusing"):
        open_split_folder(folder)


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


# -- all or nothing --------------------------------------------------------------------------------------------
class Boom(Exception):
    pass


def failing_add(monkeypatch, after):
    """ShardWriter.add fails on its `after`-th call, like a process dying half-way through the shards."""
    calls = {"n": 0}
    real = ShardWriter.add

    def add(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > after:
            raise Boom("killed")
        return real(self, *a, **k)

    monkeypatch.setattr(ShardWriter, "add", add)


def test_a_split_that_fails_half_way_leaves_no_folder(ws_path, tmp_path, monkeypatch):
    failing_add(monkeypatch, after=8)  # train and half of the rest written
    out = tmp_path / "out"
    with Workspace.open(ws_path, readonly=True) as ws, pytest.raises(Boom):
        split_workspace(ws, out, ratios=(0.4, 0.2, 0.4), size=(8, 8), progress=False)
    assert not out.exists()
    assert siblings(out) == [".out.lock"]  # no staging folder left


def test_a_failed_overwrite_keeps_the_old_split_whole(ws_path, split_copy, monkeypatch):
    old_id = read_manifest(split_copy / "manifest.json")["manifest_id"]
    before = {p.name: p.read_bytes() for p in split_copy.iterdir()}
    failing_add(monkeypatch, after=8)
    with Workspace.open(ws_path, readonly=True) as ws, pytest.raises(Boom):
        split_workspace(ws, split_copy, ratios=(0.2, 0.2, 0.6), seed=7, size=(8, 8), overwrite=True,
                        progress=False)
    assert {p.name: p.read_bytes() for p in split_copy.iterdir()} == before
    assert read_manifest(split_copy / "manifest.json")["manifest_id"] == old_id and verify(split_copy).ok


def test_overwrite_replaces_the_whole_folder(ws_path, split_copy):
    with Workspace.open(ws_path, readonly=True) as ws:
        m = split_workspace(ws, split_copy, ratios=(0.2, 0.2, 0.6), seed=7, size=(8, 8), overwrite=True,
                            progress=False)
    assert verify(split_copy).ok and read_manifest(split_copy / "manifest.json")["manifest_id"] == m["manifest_id"]
    assert siblings(split_copy) == [".copy.lock"]


def test_a_folder_with_other_files_is_not_replaced(ws_path, split_copy, capsys):
    (split_copy / "notes.txt").write_text("mine")
    rc, _, err = run(capsys, "split", ws_path, "--by-person", "20/20/60", "--out", split_copy, "--overwrite",
                     "--size", "8x8", "--no-progress")
    assert rc == 2 and "notes.txt" in err and (split_copy / "notes.txt").read_text() == "mine"


def test_a_second_writer_gets_a_one_line_error(ws_path, tmp_path, capsys):
    out = tmp_path / "out"
    with writer_lock(out, "kbh split"):  # another split is writing
        rc, _, err = run(capsys, "split", ws_path, "--by-person", "20/20/60", "--out", out, "--size", "8x8",
                         "--no-progress")
    assert rc == 2 and "another kbh split is writing" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    # The lock is released with its holder: the next split goes through.
    assert run(capsys, "split", ws_path, "--by-person", "20/20/60", "--out", out, "--size", "8x8",
               "--no-progress")[0] == 0
    assert lock_path(out).exists() and verify(out).ok


def test_a_publish_killed_between_its_renames_is_undone(ws_path, split_copy, capsys):
    old_id = read_manifest(split_copy / "manifest.json")["manifest_id"]
    split_copy.rename(split_copy.parent / ".copy.old-abc123")  # the fallback publish died here
    (split_copy.parent / ".copy.staging-xyz").mkdir()
    rc, out, err = run(capsys, "split", ws_path, "--by-person", "20/20/60", "--out", split_copy, "--size", "8x8",
                       "--no-progress")
    assert rc == 2 and "--overwrite" in err  # the old split came back, so this one needs --overwrite
    assert read_manifest(split_copy / "manifest.json")["manifest_id"] == old_id and verify(split_copy).ok
    assert siblings(split_copy) == [".copy.lock"]


# -- the check at every open -----------------------------------------------------------------------------------
def test_a_shard_folder_without_manifest(split_copy):
    (split_copy / "manifest.json").unlink()
    refused_everywhere(split_copy, "no manifest")


def test_deleted_renamed_and_unlisted_shards(split_copy):
    (split_copy / "val-00000.h5").unlink()
    (split_copy / "test-00000.h5").rename(split_copy / "test-00001.h5")
    rep = verify(split_copy)
    problems = " | ".join(rep.problems)
    assert "val-00000.h5: missing shard" in problems and "test-00000.h5: missing shard" in problems
    assert "test-00001.h5: not listed in the manifest" in problems
    with pytest.raises(KbhError, match="refusing .*missing shard.* more problem"):
        open_split_folder(split_copy)


def test_a_shard_from_another_split_is_refused(split_copy, good_split, tmp_path, ws_path):
    other = tmp_path / "other"
    with Workspace.open(ws_path, readonly=True) as ws:
        split_workspace(ws, other, ratios=(0.2, 0.2, 0.6), seed=7, size=(8, 8), progress=False)
    shutil.copy(other / "val-00000.h5", split_copy / "val-00000.h5")
    refresh_manifest(split_copy)  # even with matching sizes and hashes: the ids differ
    refused_everywhere(split_copy, "manifest_id")


def test_manifest_names_must_be_plain(split_copy, tmp_path):
    secret = tmp_path / "secret.h5"
    shutil.copy(split_copy / "val-00000.h5", secret)
    m = read_manifest(split_copy / "manifest.json")
    m["splits"]["val"]["shards"][0]["file"] = "../secret.h5"
    write_manifest(split_copy / "manifest.json", m)
    opened = []
    real = h5py.File

    def spy(path, *a, **k):
        opened.append(str(path))
        return real(path, *a, **k)

    import kbh.split_folder  # noqa: F401  (h5py is imported inside the check)
    h5py.File = spy
    try:
        refused_everywhere(split_copy, "'../secret.h5'", "not a plain")
    finally:
        h5py.File = real
    assert not any("secret" in p for p in opened)


def replace_masks(path, make):
    """Swap a shard's `masks` dataset for what `make(file, shape, data)` creates under the same name."""
    with h5py.File(path, "r+") as f:
        data = f["masks"][:]
        del f["masks"]
        make(f, data.shape, data)


def test_external_link_is_refused(split_copy, tmp_path):
    elsewhere = tmp_path / "elsewhere.h5"
    with h5py.File(split_copy / "val-00000.h5", "r") as f, h5py.File(elsewhere, "w") as g:
        g["masks"] = f["masks"][:]
    replace_masks(split_copy / "val-00000.h5",
                  lambda f, shape, data: f.__setitem__("masks", h5py.ExternalLink(str(elsewhere), "masks")))
    refresh_manifest(split_copy)
    refused_everywhere(split_copy, "masks", "ExternalLink")
    with pytest.raises(KbhError, match="refused: masks is an ExternalLink"):
        ShardReader([split_copy / "val-00000.h5"])


def test_external_storage_is_refused(split_copy, tmp_path):
    raw = tmp_path / "masks.raw"

    def make(f, shape, data):
        raw.write_bytes(data.astype(np.uint8).tobytes())
        f.create_dataset("masks", shape, np.uint8, external=[(str(raw), 0, h5py.h5f.UNLIMITED)])

    replace_masks(split_copy / "val-00000.h5", make)
    refresh_manifest(split_copy)
    refused_everywhere(split_copy, "masks", "external file")


def test_virtual_dataset_is_refused(split_copy, tmp_path):
    src = tmp_path / "source.h5"

    def make(f, shape, data):
        with h5py.File(src, "w") as g:
            g["m"] = data
        layout = h5py.VirtualLayout(shape, np.uint8)
        layout[:] = h5py.VirtualSource(str(src), "m", shape)
        f.create_virtual_dataset("masks", layout)

    replace_masks(split_copy / "val-00000.h5", make)
    refresh_manifest(split_copy)
    refused_everywhere(split_copy, "masks", "virtual")


def test_train_and_eval_refuse_what_verify_refuses(split_copy, tmp_path, capsys):
    train = ["train", "--model", "unet-g", "--steps", "1", "--batch", "2", "--workers", "0", "--eval-every", "1"]
    assert run(capsys, *train, "--data", split_copy, "--out", tmp_path / "ok")[0] == 0  # a checkpoint for eval
    (split_copy / "test-00000.h5").unlink()
    rc, out, _ = run(capsys, "verify", split_copy)
    assert rc == 1 and "missing shard" in out
    rc, _, err = run(capsys, *train, "--data", split_copy, "--out", tmp_path / "run")
    assert rc == 2 and "refusing" in err and "missing shard" in err and err.strip().splitlines()[-1].startswith("kbh")
    assert not (tmp_path / "run" / "last.pt").exists()
    rc, _, err = run(capsys, "eval", "--checkpoint", tmp_path / "ok" / "last.pt", "--data", split_copy, "--split",
                     "val")
    assert rc == 2 and "refusing" in err and "missing shard" in err


def test_a_corrupt_chunk_stops_training_with_file_and_frame(split_copy, tmp_path, capsys):
    path = split_copy / "train-00000.h5"
    with h5py.File(path, "r") as f:
        frame = f["frame_id"].asstr()[0]
    flip_byte_in_chunk(path, "images", 0, at=5)
    rc, _, err = run(capsys, "train", "--model", "unet-g", "--steps", "3", "--batch", "6", "--workers", "1",
                     "--data", split_copy, "--out", tmp_path / "run")
    last = err.strip().splitlines()[-1]
    assert rc == 2 and last.startswith("kbh: error: ") and f"train-00000.h5: frame {frame} (#0) cannot be read" in last
    assert "Traceback" not in err


def test_corrupt_chunk_names_file_and_frame(split_copy):
    path = split_copy / "test-00000.h5"
    with h5py.File(path, "r") as f:
        frame = f["frame_id"].asstr()[1]
    flip_byte_in_chunk(path, "images", 1, at=3)
    reader = ShardReader([path])
    reader[0]
    with pytest.raises(KbhError, match=f"test-00000.h5: frame {frame} \\(#1\\) cannot be read .*kbh verify"):
        reader[1]


def test_the_check_reads_a_manifest_written_by_this_version(good_split):
    m = json.loads((good_split / "manifest.json").read_text())
    assert all("bytes" in s for e in m["splits"].values() for s in e["shards"])
    assert open_split_folder(good_split).paths.keys() == {"train", "val", "test"}


# -- the operating system --------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (needs root, as in CI); skipped where mounting is not allowed."""
    with mounted_tmpfs(tmp_path / "disk", "256k") as d:
        yield d


def test_disk_full_during_a_split(tmp_path, small_disk, capsys):
    ws = make_ws(tmp_path / "ws", {f"p{i}": {f"s{i}": 4} for i in range(5)}, hw=(64, 64))
    out = small_disk / "out"
    rc, _, err = run(capsys, "split", ws, "--by-person", "20/20/60", "--out", out, "--size", "200x200",
                     "--compression", "none", "--no-progress")
    assert rc == 2 and "No space left on device" in err and str(small_disk) in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and siblings(out) == [".out.lock"]


def test_read_only_output_folder(tmp_path, small_disk, capsys):
    ws = make_ws(tmp_path / "ws", LAYOUT)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    rc, _, err = run(capsys, "split", ws, "--by-person", "20/20/60", "--out", small_disk / "out", "--size", "8x8",
                     "--no-progress")
    assert rc == 2 and "Read-only file system" in err and str(small_disk) in err


def test_a_published_manifest_cannot_put_a_person_in_two_splits(ws_path, good_split, tmp_path, capsys):
    m = read_manifest(good_split / "manifest.json")
    m["unit"] = "sequence"  # whatever the unit says
    moved = m["splits"]["train"]["frame_ids"].pop()
    m["splits"]["test"]["frame_ids"].append(moved)
    write_manifest(tmp_path / "m.json", m)
    rc, _, err = run(capsys, "split", ws_path, "--manifest", tmp_path / "m.json", "--out", tmp_path / "out",
                     "--size", "8x8", "--no-progress")
    assert rc == 2 and "would be in" in err and "person-disjoint" in err and not (tmp_path / "out").exists()


def test_a_symlinked_out_folder_keeps_its_link(ws_path, split_copy, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(split_copy)
    with Workspace.open(ws_path, readonly=True) as ws:
        m = split_workspace(ws, link, ratios=(0.2, 0.2, 0.6), seed=7, size=(8, 8), overwrite=True, progress=False)
    assert link.is_symlink() and read_manifest(split_copy / "manifest.json")["manifest_id"] == m["manifest_id"]
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["splits"]["val"]["shards"][0].__setitem__("bytes", "abc"), "bytes must be a number"),
    (lambda m: m.__setitem__("schema_version", "abc"), "schema_version 'abc' is not a number"),
    (lambda m: m["splits"]["val"].__setitem__("persons", 5), "persons must be a list of strings"),
    (lambda m: m["splits"]["val"]["shards"][0].__setitem__("frames", "x"), "frames must be a number"),
])
def test_malformed_manifest_fields_are_one_line(split_copy, edit, words, capsys):
    m = json.loads((split_copy / "manifest.json").read_text())
    edit(m)
    (split_copy / "manifest.json").write_text(json.dumps(m))
    refused_everywhere(split_copy, words)
    rc, out, err = run(capsys, "verify", split_copy)
    assert rc == 1 and words in out and "Traceback" not in out + err


def test_shards_of_the_wrong_shape_are_refused_at_open(split_copy):
    replace_masks(split_copy / "val-00000.h5", lambda f, shape, data: f.create_dataset("masks", data=data[:-1]))
    refresh_manifest(split_copy)
    refused_everywhere(split_copy, "masks holds")
    with h5py.File(split_copy / "test-00000.h5", "r+") as f:
        data = f["images"][:]
        del f["images"]
        f.create_dataset("images", data=data[..., 0])  # no colour channel
    refresh_manifest(split_copy)
    refused_everywhere(split_copy, "images is uint8", "not the shard layout")


def test_verify_does_not_read_through_external_storage(split_copy, tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would block for ever

    def make(f, shape, data):
        f.create_dataset("masks", shape, np.uint8, external=[(str(fifo), 0, h5py.h5f.UNLIMITED)])

    replace_masks(split_copy / "val-00000.h5", make)
    refresh_manifest(split_copy)
    refused_everywhere(split_copy, "external file")
