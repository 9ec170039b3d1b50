import json

import cv2
import numpy as np
import pytest

from kbh.cli import main
from kbh.mask_export import rle_decode, rle_encode
from kbh.stats import workspace_stats
from kbh.workspace import Workspace
from tests.helpers import blob_image


@pytest.fixture
def ws(tmp_path):
    w = Workspace.init(tmp_path / "ws")
    w.upsert_person("p1", {"skin_tone": "light"})
    w.upsert_person("p2", {"skin_tone": "dark"})
    w.upsert_sequence("s1", "p1", {"lighting": "dim"})
    w.upsert_sequence("s2", "p2", {"lighting": "dim"})
    for i in range(3):
        img, mask = blob_image(seed=i)
        fid = w.add_image("s1" if i < 2 else "s2", i, img)
        if i < 2:
            w.save_annotation(fid, mask=mask, status="done", source="grabcut", annotator="ann", add_seconds=30)
    yield w
    w.close()


def test_rle_hand_computed():
    # column-major pixels of [[0,1],[1,1]] are 0,1,1,1 -> runs [1, 3] -> chars '1', '3'
    assert rle_encode(np.array([[0, 1], [1, 1]]))["counts"] == "13"
    # a mask starting with hand gets a leading zero run: 1,1,0,0 -> [0, 2, 2]
    assert rle_encode(np.array([[1, 0], [1, 0]]))["counts"] == "022"
    # counts after the second are stored as differences to count[i-2]; negatives use the sign bit
    m = np.zeros((1, 100), np.uint8)
    m[0, 40:41] = 1
    m[0, 90:] = 1
    r = rle_encode(m)
    np.testing.assert_array_equal(rle_decode(r), m)


def test_rle_round_trip_random():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = (rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) > rng.random()).astype(np.uint8)
        np.testing.assert_array_equal(rle_decode(rle_encode(m)), m)


def test_workspace_stats(ws):
    s = workspace_stats(ws)
    assert (s["frames"], s["persons"], s["sequences"]) == (3, 2, 2)
    assert s["by_status"]["done"] == 2 and s["by_status"]["unlabeled"] == 1
    assert s["by_annotator"]["ann"] == {"frames": 2, "seconds": 60.0, "strokes": 0}
    assert s["person_attributes"] == {"skin_tone": {"dark": 1, "light": 1}}
    assert s["sequence_attributes"] == {"lighting": {"dim": 2}}
    expected = np.mean([blob_image(seed=i)[1].mean() for i in range(2)])
    assert s["mask_coverage"]["mean"] == pytest.approx(expected)
    assert s["progress"] == pytest.approx(2 / 3)


def test_export_png_and_coco(ws, tmp_path, capsys):
    assert main(["export", str(ws.root), "--format", "png", "--out", str(tmp_path / "png"), "--images"]) == 0
    files = sorted((tmp_path / "png" / "masks").rglob("*.png"))
    assert [f.relative_to(tmp_path / "png" / "masks").as_posix() for f in files] == ["p1_s1/00000.png",
                                                                                     "p1_s1/00001.png"]
    m = cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(m, blob_image(seed=0)[1] * 255)
    assert len(list((tmp_path / "png" / "images").rglob("*.png"))) == 2

    assert main(["export", str(ws.root), "--format", "coco", "--out", str(tmp_path / "c.json")]) == 0
    doc = json.loads((tmp_path / "c.json").read_text())
    assert len(doc["images"]) == 2 and doc["categories"][0]["name"] == "hand"
    ann = doc["annotations"][0]
    np.testing.assert_array_equal(rle_decode(ann["segmentation"]), blob_image(seed=0)[1])
    assert ann["area"] == int(blob_image(seed=0)[1].sum())


def test_export_nothing_done_is_an_error(ws, tmp_path, capsys):
    assert main(["export", str(ws.root), "--format", "png", "--out", str(tmp_path / "o"), "--status",
                 "reviewed"]) == 2
    assert "no frames with status reviewed" in capsys.readouterr().err
    assert main(["export", str(ws.root), "--format", "png", "--out", str(tmp_path / "o"), "--status",
                 "finished"]) == 2
    assert "unknown status 'finished'" in capsys.readouterr().err


def test_stats_cli_json(ws, tmp_path, capsys):
    assert main(["stats", str(ws.root), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "3 frames, 2 persons, 2 sequences" in out and "annotator ann: 2 frames" in out
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 3
