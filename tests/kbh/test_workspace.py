import sqlite3

import numpy as np
import pytest

from kbh.errors import KbhError
from kbh.strokes import BACKGROUND, FOREGROUND, Stroke, hard_labels
from kbh.workspace import Workspace
from tests.helpers import blob_image


def add_png(ws, seq, idx, img):
    return ws.add_image(seq, idx, img)


@pytest.fixture
def ws(tmp_path):
    w = Workspace.init(tmp_path / "ws")
    w.upsert_sequence("s1", "p1", {"desk": "wood"})
    yield w
    w.close()


def test_init_twice_and_open_missing(tmp_path, ws):
    with pytest.raises(KbhError, match="already a kbh workspace"):
        Workspace.init(ws.root)
    with pytest.raises(KbhError, match="not a kbh workspace"):
        Workspace.open(tmp_path / "nothing")


def test_corrupt_database_blocks_opening(tmp_path):
    Workspace.init(tmp_path / "w").close()
    db = tmp_path / "w" / "kbh.sqlite"
    for suffix in ("-wal", "-shm"):
        (tmp_path / "w" / f"kbh.sqlite{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 100)
    with pytest.raises(KbhError, match="corrupt workspace database"):
        Workspace.open(tmp_path / "w")
    assert db.read_bytes() == b"garbage" * 100  # not overwritten


def test_annotation_round_trip_with_strokes(ws):
    img, mask = blob_image()
    fid = add_png(ws, "s1", 0, img)
    strokes = [Stroke(FOREGROUND, 3, [(30, 20), (32, 21)]), Stroke(BACKGROUND, 2.5, [(2, 2)])]
    ws.save_annotation(fid, mask=mask, strokes=strokes, status="in_progress", source="grabcut",
                       annotator="ann", add_seconds=4.5)
    ws.save_annotation(fid, add_seconds=1.5, status="done")
    ws.close()
    ws2 = Workspace.open(ws.root)
    f = ws2.frame(fid)
    assert (f.status, f.source, f.annotator, f.seconds, f.n_strokes) == ("done", "grabcut", "ann", 6.0, 2)
    assert ws2.strokes(fid) == strokes
    np.testing.assert_array_equal(ws2.mask(fid), mask)
    np.testing.assert_array_equal(ws2.image(fid), img)
    ws2.close()


def test_mask_of_wrong_size_is_refused(ws):
    img, _ = blob_image()
    fid = add_png(ws, "s1", 0, img)
    with pytest.raises(KbhError, match="mask is 5x5, frame is 60x40"):
        ws.save_annotation(fid, mask=np.zeros((5, 5)))


def test_prediction_never_overwrites_human_status(ws):
    img, mask = blob_image()
    a, b = add_png(ws, "s1", 0, img), add_png(ws, "s1", 1, img[::-1].copy())
    ws.save_annotation(b, mask=mask, status="done", source="grabcut")
    prob = mask.astype(np.float32) * 0.8 + 0.1
    assert ws.save_prediction(a, "sru0", prob, 0.2) is True
    assert ws.save_prediction(b, "sru0", prob, 0.2) is False
    assert ws.frame(a).status == "prelabeled" and ws.frame(b).status == "done"
    back = ws.prediction_probability(ws.prediction(a))
    assert np.abs(back - prob).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(ws.mask(b), mask)


def test_failed_transaction_rolls_back(ws):
    img, _ = blob_image()
    with pytest.raises(RuntimeError):
        with ws.transaction():
            ws.upsert_person("p2")
            raise RuntimeError("boom")
    assert "p2" not in ws.persons()


def test_sequence_cannot_change_person(ws):
    with pytest.raises(KbhError, match="already belongs to person 'p1'"):
        ws.upsert_sequence("s1", "p9")


def test_hard_labels_last_stroke_wins():
    labels = hard_labels([Stroke(FOREGROUND, 2, [(5, 5), (15, 5)]), Stroke(BACKGROUND, 1, [(10, 5)])], (12, 20))
    assert labels[5, 5] == FOREGROUND and labels[5, 15] == FOREGROUND
    assert labels[5, 10] == BACKGROUND and labels[11, 19] == -1
    # radius 2 round brush: 2 px above the line is in, 3 px is out
    assert labels[3, 5] == FOREGROUND and labels[2, 5] == -1


def test_wal_mode(ws):
    assert ws.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
