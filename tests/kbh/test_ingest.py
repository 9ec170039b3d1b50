import csv

import cv2
import numpy as np
import pytest
from PIL import Image

from kbh.cli import main
from kbh.errors import KbhError
from kbh.mask_rules import MaskRule
from kbh.ingest import (import_items, items_from_csv, items_from_folder, items_from_kbh_layout,
                        items_from_video)
from kbh.workspace import Workspace
from tests.helpers import SHARED_DATA, blob_image, write_rgb


@pytest.fixture
def ws(tmp_path):
    w = Workspace.init(tmp_path / "ws")
    yield w
    w.close()


def make_folder(root, n=4, invert=False, persons=("id01", "id02")):
    gts = {}
    for i in range(n):
        person = persons[i % len(persons)]
        img, mask = blob_image(seed=i)
        stem = f"g{i % 2}_hgr1_{person}_{i}"
        write_rgb(root / "images" / f"{stem}.jpg", img)
        m = (1 - mask) if invert else mask
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(m > 0).save(root / "masks" / f"{stem}.bmp")  # 1-bit BMP, like HGR1
        gts[stem] = mask
    return gts


def test_folder_import_with_regex_ids_and_inverted_masks(ws, tmp_path):
    gts = make_folder(tmp_path, n=4, invert=True)
    items = items_from_folder(tmp_path / "images", tmp_path / "masks", person_regex=r"hgr1_(id\d+)",
                              sequence_regex=r"^(.*)_\d+$", index_regex=r"_(\d+)$")
    report = import_items(ws, items, MaskRule(invert=True), progress=False)
    assert report.added == 4 and report.with_masks == 4
    assert set(ws.persons()) == {"id01", "id02"}
    for f in ws.frames():
        assert f.status == "done" and f.source == "import"
        stem = f"{f.sequence_id}_{f.frame_index}"
        np.testing.assert_array_equal(ws.mask(f), gts[stem])  # hand = 1 after inversion
        assert ws.image(f).shape == (40, 60, 3)


def test_reimport_same_files_is_skipped(ws, tmp_path):
    make_folder(tmp_path, n=3)
    items = items_from_folder(tmp_path / "images", person="p")
    assert import_items(ws, items, progress=False).added == 3
    again = import_items(ws, items_from_folder(tmp_path / "images", person="p"), progress=False)
    assert again.added == 0 and again.skipped_duplicates == 3
    assert ws.count_frames() == 3


def test_corrupt_image_fails_whole_import_and_leaves_nothing(ws, tmp_path):
    make_folder(tmp_path, n=3)
    bad = tmp_path / "images" / "zz_corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    items = items_from_folder(tmp_path / "images", person="p")
    with pytest.raises(KbhError, match="zz_corrupt.jpg: not a readable image"):
        import_items(ws, items, progress=False)
    assert ws.count_frames() == 0
    assert not any((ws.root / "frames").rglob("*.*"))


def test_mask_size_mismatch_and_multivalued_masks(ws, tmp_path):
    img, mask = blob_image()
    write_rgb(tmp_path / "im" / "a.png", img)
    (tmp_path / "mk").mkdir()
    cv2.imwrite(str(tmp_path / "mk" / "a.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(KbhError, match=r"a.png: mask is 10x10, its frame .* is 60x40"):
        import_items(ws, items_from_folder(tmp_path / "im", tmp_path / "mk", person="p"), progress=False)
    grey = (mask * 200 + np.arange(60, dtype=np.uint8)[None, :] % 3).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "mk" / "a.png"), grey)
    with pytest.raises(KbhError, match="distinct values .*--mask-threshold"):
        import_items(ws, items_from_folder(tmp_path / "im", tmp_path / "mk", person="p"), progress=False)
    import_items(ws, items_from_folder(tmp_path / "im", tmp_path / "mk", person="p"),
                 MaskRule(threshold=100), progress=False)
    np.testing.assert_array_equal(ws.mask(ws.frames()[0]), mask)


def test_palette_mask_is_two_valued(ws, tmp_path):
    img, mask = blob_image()
    write_rgb(tmp_path / "im" / "a.png", img)
    (tmp_path / "mk").mkdir()
    pal = Image.fromarray(mask * 3, mode="L").convert("P")  # palette indices 0 and 3
    pal.putpalette([0, 0, 0] * 3 + [255, 0, 0] + [0, 0, 0] * 252)
    pal.save(tmp_path / "mk" / "a.png")
    assert Image.open(tmp_path / "mk" / "a.png").mode == "P"
    import_items(ws, items_from_folder(tmp_path / "im", tmp_path / "mk", person="p"), progress=False)
    np.testing.assert_array_equal(ws.mask(ws.frames()[0]), mask)


def test_missing_mask_for_an_image_is_an_error(tmp_path):
    make_folder(tmp_path, n=2)
    next((tmp_path / "masks").iterdir()).unlink()
    with pytest.raises(KbhError, match=r"no mask 'g0_hgr1_id01_0' \(any image extension\)"):
        items_from_folder(tmp_path / "images", tmp_path / "masks", person="p")


def test_csv_import_with_attributes_and_hostile_text(ws, tmp_path):
    rows = []
    for i in range(3):
        img, mask = blob_image(seed=i)
        write_rgb(tmp_path / f"f{i}.png", img)
        rows.append({"path": f"f{i}.png", "person": "o'brien; DROP TABLE frames;--", "sequence": "s\"1",
                     "frame_index": str(10 + i), "skin_tone": "dark", "lighting": "dim", "mask": ""})
    with open(tmp_path / "list.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import_items(ws, items_from_csv(tmp_path / "list.csv"), progress=False)
    frames = ws.frames()
    assert [f.frame_index for f in frames] == [10, 11, 12]
    assert ws.persons() == {"o'brien; DROP TABLE frames;--": {"skin_tone": "dark"}}
    assert ws.sequences()['s"1'] == ("o'brien; DROP TABLE frames;--", {"lighting": "dim"})
    assert all(f.status == "unlabeled" for f in frames)


def test_csv_errors_name_the_line(tmp_path):
    (tmp_path / "a.csv").write_text("path,person,frame_index\nx.png,p,seven\n")
    with pytest.raises(KbhError, match=r"a.csv:2: frame_index 'seven'"):
        items_from_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("file,who\nx.png,p\n")
    with pytest.raises(KbhError, match=r"b.csv: missing column\(s\) path, person"):
        items_from_csv(tmp_path / "b.csv")


def test_video_import_every_nth_frame(ws, tmp_path):
    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(7):
        frame = np.full((48, 64, 3), 30 * i, np.uint8)
        vw.write(frame)
    vw.release()
    report = import_items(ws, items_from_video(path, every=3, person="p1", sequence="clip"), progress=False)
    assert report.added == 3
    assert [f.frame_index for f in ws.frames()] == [0, 3, 6]
    assert ws.image(ws.frames()[0]).shape == (48, 64, 3)


def test_broken_video_is_an_error(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"nope")
    with pytest.raises(KbhError, match="bad.mp4"):
        items_from_video(tmp_path / "bad.mp4", 1, "p", "s")


def test_kbh_layout(ws, tmp_path):
    img, mask = blob_image()
    write_rgb(tmp_path / "kbh" / "50_202718019" / "00025_halfres.jpg", img)
    cv2.imwrite(str(tmp_path / "kbh" / "50_202718019" / "00025_mask.png"), mask * 255)
    import_items(ws, items_from_kbh_layout(tmp_path / "kbh"), progress=False)
    f = ws.frame_by_key("50_202718019/00025")
    assert f is not None and f.person_id == "50" and f.status == "done"
    np.testing.assert_array_equal(ws.mask(f), mask)


def test_cli_import_errors_are_one_line_and_nonzero(tmp_path, capsys):
    assert main(["import", str(tmp_path / "nows"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a kbh workspace" in err
    assert main(["init", str(tmp_path / "ws")]) == 0
    assert main(["import", str(tmp_path / "ws"), str(tmp_path / "missing")]) == 2
    assert "missing: no such file or folder" in capsys.readouterr().err


def test_cli_warns_about_inverted_polarity(tmp_path, capsys):
    make_folder(tmp_path, n=2, invert=True)
    main(["init", str(tmp_path / "ws")])
    assert main(["import", str(tmp_path / "ws"), str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                 "--person", "p", "--quiet"]) == 0
    assert "--mask-invert" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED_DATA / "hgr1").is_dir(), reason="../shared/data/hgr1 not present")
def test_hgr1_real_import(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    items = items_from_folder(SHARED_DATA / "hgr1" / "images", SHARED_DATA / "hgr1" / "masks",
                              person_regex=r"hgr1_id(\d+)", sequence_regex=r"^(.*)_\d+$", index_regex=r"_(\d+)$")
    report = import_items(ws, items, MaskRule(invert=True), progress=False)
    assert report.added == 106 and len(ws.persons()) == 8
    counts = {p: len(ws.frames(person=p)) for p in ws.persons()}
    assert counts == {"01": 15, "02": 10, "03": 10, "04": 10, "05": 15, "06": 15, "07": 15, "08": 16}
    cov = np.array(list(report.mask_coverage.values()))
    assert 0.05 < cov.min() and cov.max() < 0.6  # hand = 1 is the minority of each frame


def test_mask_key_pairs_images_and_masks_with_different_names(ws, tmp_path):
    """DRIVE-style names: 21_training.tif with 21_manual1.gif, paired by the number."""
    masks = {}
    for n in (21, 22):
        img, mask = blob_image(seed=n)
        write_rgb(tmp_path / "images" / f"{n}_training.tif", img)
        (tmp_path / "manual").mkdir(exist_ok=True)
        Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "manual" / f"{n}_manual1.gif")
        masks[str(n)] = mask
    items = items_from_folder(tmp_path / "images", tmp_path / "manual", person_regex=r"^(\d+)_",
                              mask_key=r"^(\d+)_")
    import_items(ws, items, MaskRule(), progress=False)
    for f in ws.frames():
        np.testing.assert_array_equal(ws.mask(f), masks[f.person_id])  # not the other image's mask
    (tmp_path / "manual" / "22_manual1.gif").unlink()
    with pytest.raises(KbhError, match="22_training.tif: no mask with the --mask-key"):
        items_from_folder(tmp_path / "images", tmp_path / "manual", mask_key=r"^(\d+)_")
    with pytest.raises(KbhError, match="--mask-key needs --masks"):
        items_from_folder(tmp_path / "images", None, mask_key=r"^(\d+)_")
    with pytest.raises(KbhError, match="--mask-key"):
        items_from_folder(tmp_path / "images", tmp_path / "manual", mask_key=r"^(x")


def test_drive_layout_needs_both_parts(tmp_path):
    from kbh.ingest import items_from_drive_layout

    (tmp_path / "training" / "images").mkdir(parents=True)
    with pytest.raises(KbhError, match="not the DRIVE layout"):
        items_from_drive_layout(tmp_path)


@pytest.mark.realdata
def test_drive_real_import(tmp_path):
    drive = SHARED_DATA / "drive"
    if not drive.is_dir():
        pytest.skip(f"no DRIVE data at {drive}")
    assert main(["init", str(tmp_path / "ws")]) == 0
    assert main(["import", str(tmp_path / "ws"), str(drive), "--layout", "drive", "--quiet"]) == 0
    with Workspace.open(tmp_path / "ws") as w:
        frames = w.frames()
        assert len(frames) == 40 and len({f.person_id for f in frames}) == 40
        f = next(f for f in frames if f.person_id == "21")
        assert (f.height, f.width) == (584, 565)
        gt = np.array(Image.open(drive / "training" / "1st_manual" / "21_manual1.gif").convert("L")) > 127
        np.testing.assert_array_equal(w.mask(f), gt)
