"""The workspace under faults (issue 9): orphans swept, mask and strokes committed together, read-only folders,
a locked database, file modes, and errors from the operating system as one line."""

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

import kbh.workspace as workspace_module
from kbh.cli import main
from kbh.errors import KbhError
from kbh.atomic_file import atomic_write_bytes
from kbh.strokes import BACKGROUND, FOREGROUND, Stroke
from kbh.workspace import Workspace
from tests.helpers import make_ws, mounted_tmpfs

LAYOUT = {"p0": {"s0": 2}, "p1": {"s1": 2}, "p2": {"s2": 2}}


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def files_under(root):
    return sorted(p.relative_to(root).as_posix() for folder in ("frames", "masks", "predictions")
                  for p in (root / folder).rglob("*") if p.is_file())


def test_orphans_are_swept_by_the_first_writer(tmp_path, capsys):
    root = make_ws(tmp_path / "ws", LAYOUT)
    kept = files_under(root)
    (root / "frames" / "p9" / "s9").mkdir(parents=True)
    for rel in ("frames/p9/s9/000000_deadbeef.png", "masks/77_0123456789abcdef.png", "frames/.x.png.abc.tmp",
                "predictions/3_m_ffff.png"):
        (root / rel).write_bytes(b"x" * 1000)
    with Workspace.open(root, readonly=True):
        pass  # readers never sweep
    assert len(files_under(root)) == len(kept) + 4
    first = Workspace.open(root)
    assert first.swept == (4, 4000) and files_under(root) == kept
    assert "swept 4 orphaned file(s)" in capsys.readouterr().err
    (root / "masks" / "88_aaaa.png").write_bytes(b"y")
    second = Workspace.open(root)  # another writer is open: a file may be on its way to a row
    assert second.swept == (0, 0) and (root / "masks" / "88_aaaa.png").exists()
    second.close()
    first.close()


def test_mask_and_strokes_commit_together(tmp_path, monkeypatch):
    root = make_ws(tmp_path / "ws", {"p0": {"s0": 1}})
    ws = Workspace.open(root)
    fid = ws.frames()[0].id
    old_mask, old_strokes = ws.mask(fid), [Stroke(FOREGROUND, 2, ((3, 3), (5, 5)))]
    ws.save_annotation(fid, mask=old_mask, strokes=old_strokes)
    new_mask = 1 - old_mask
    new_strokes = old_strokes + [Stroke(BACKGROUND, 2, ((1, 1),))]

    real = ws.transaction

    def dies(*a, **k):  # the process dies after the mask file is written, before the commit
        raise KeyboardInterrupt

    monkeypatch.setattr(ws, "transaction", dies)
    with pytest.raises(KeyboardInterrupt):
        ws.save_annotation(fid, mask=new_mask, strokes=new_strokes)
    monkeypatch.setattr(ws, "transaction", real)
    ws.close()
    again = Workspace.open(root)  # sweeps the uncommitted mask file
    assert again.strokes(fid) == old_strokes
    np.testing.assert_array_equal(again.mask(fid), old_mask)
    assert again.swept[0] == 1
    again.save_annotation(fid, mask=new_mask, strokes=new_strokes)
    np.testing.assert_array_equal(again.mask(fid), new_mask)
    assert len(list((root / "masks").glob(f"{fid}_*.png"))) == 1  # the old file went after the commit
    again.close()


def test_files_honour_the_umask(tmp_path, capsys):
    root = make_ws(tmp_path / "ws", LAYOUT)
    rc, _, err = run(capsys, "split", root, "--by-person", "34/33/33", "--out", tmp_path / "split", "--size",
                     "8x8", "--no-progress")
    assert rc == 0, err
    atomic_write_bytes(tmp_path / "checkpoint.pt", b"weights")  # as training.checkpoint writes
    want = 0o666 & ~workspace_module.os.umask(0o022)
    os.umask(0o022)
    paths = [*(root / f for f in files_under(root)), *(tmp_path / "split").iterdir(), tmp_path / "checkpoint.pt"]
    assert {oct(p.stat().st_mode & 0o777) for p in paths} == {oct(want)}
    assert (tmp_path / "split").stat().st_mode & 0o777 == 0o777 & ~0o022


def test_a_locked_database_is_one_line(tmp_path, monkeypatch):
    root = make_ws(tmp_path / "ws", {"p0": {"s0": 1}})
    monkeypatch.setattr(workspace_module, "BUSY_TIMEOUT_S", 0.2)
    other = sqlite3.connect(root / "kbh.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    ws = Workspace.open(root)
    with pytest.raises(KbhError, match=r"kbh.sqlite: locked by another process for more than 0.2 s"):
        ws.set_status(ws.frames()[0].id, "done")
    other.execute("ROLLBACK")
    other.close()
    ws.close()


def test_stats_into_a_closed_pipe_is_quiet(tmp_path):
    root = make_ws(tmp_path / "ws", LAYOUT)
    p = subprocess.Popen([sys.executable, "-m", "kbh.cli", "stats", str(root)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # `kbh stats | head -0`
    err = p.stderr.read().decode()
    assert p.wait() == 141 and "Traceback" not in err and err == ""


@pytest.fixture
def tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "mnt", "512k") as d:
        yield d


def test_a_read_only_workspace_opens_read_only(tmp_path, tmpfs, capsys):
    root = make_ws(tmpfs / "ws", LAYOUT)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    rc, out, err = run(capsys, "stats", root)
    assert rc == 0 and "6 frames, 3 persons" in out, err
    assert run(capsys, "queue", root)[0] == 0
    rc, _, err = run(capsys, "export", root, "--format", "png", "--out", tmp_path / "exported")
    assert rc == 0 and len(list((tmp_path / "exported").rglob("*.png"))) == 6, err
    rc, _, err = run(capsys, "split", root, "--by-person", "34/33/33", "--out", tmp_path / "split", "--size", "8x8",
                     "--no-progress")
    assert rc == 0, err
    rc, _, err = run(capsys, "import", root, tmp_path / "exported")
    assert rc == 2 and "read-only workspace" in err and "stats, export, split, queue" in err
    assert "corrupt" not in err


def test_export_to_a_full_disk_names_the_file(tmp_path, tmpfs, capsys):
    root = make_ws(tmp_path / "ws", LAYOUT, hw=(200, 200))
    (tmpfs / "filler").write_bytes(b"\0" * (500 * 1024))
    rc, _, err = run(capsys, "export", root, "--format", "png", "--images", "--out", tmpfs / "out")
    assert rc == 2 and str(tmpfs / ".out.staging-") in err and "No space left on device" in err
    assert err.strip().splitlines()[-1].startswith("kbh: error: ") and "Traceback" not in err
    assert sorted(p.name for p in tmpfs.iterdir()) == [".out.lock", "filler"]  # no half-written export


def test_export_keeps_masks_whose_ids_only_differ_in_odd_characters(tmp_path, capsys):
    import csv

    import cv2

    rows = []
    for k, (person, seq) in enumerate((("x y", "s a"), ("x_y", "s_a"), ("x/y", "s/a"))):
        img = np.full((20, 30, 3), 40 * k, np.uint8)
        cv2.imwrite(str(tmp_path / f"{k}.png"), img)
        mask = np.zeros((20, 30), np.uint8)
        mask[k:k + 5, :] = 255
        cv2.imwrite(str(tmp_path / f"m{k}.png"), mask)
        rows.append({"path": f"{k}.png", "person": person, "sequence": seq, "frame_index": 1, "mask": f"m{k}.png"})
    with open(tmp_path / "list.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    main(["init", str(tmp_path / "ws")])
    assert main(["import", str(tmp_path / "ws"), str(tmp_path / "list.csv"), "--quiet"]) == 0
    (tmp_path / ".out.staging-left").mkdir()  # a killed export's leftovers
    rc, out, err = run(capsys, "export", tmp_path / "ws", "--format", "png", "--out", tmp_path / "out")
    assert rc == 0 and "exported 3 masks" in out, err
    assert len(list((tmp_path / "out").rglob("*.png"))) == 3
    assert not (tmp_path / ".out.staging-left").exists()


def test_a_read_only_copy_of_a_killed_writers_workspace_sees_its_last_commits(tmp_path, tmpfs, capsys):
    root = make_ws(tmpfs / "ws", {"p0": {"s0": 2}})
    script = ("import os, sys; from kbh.workspace import Workspace\n"
              "ws = Workspace.open(sys.argv[1])\n"
              "for f in ws.frames(): ws.set_status(f.id, 'reviewed')\n"
              "os._exit(0)  # killed: no close, no checkpoint\n")
    subprocess.run([sys.executable, "-c", script, str(root)], check=True)
    assert (root / "kbh.sqlite-wal").stat().st_size > 0
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    rc, out, err = run(capsys, "stats", root)
    assert rc == 0 and "reviewed 2" in out, out + err
