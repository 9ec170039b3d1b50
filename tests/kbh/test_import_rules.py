"""What a mask file means (kbh.mask_rules), the pixel limit, and bad image files (issue 9)."""

import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from kbh.cli import main
from kbh.errors import KbhError
from kbh.mask_rules import MaskRule, coverage_warnings, parse_colour
from kbh.workspace import Workspace
from tests.helpers import blob_image, write_rgb


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def frame(tmp_path):
    """One 40x60 image in images/, its ground truth, and an empty workspace."""
    img, mask = blob_image()
    write_rgb(tmp_path / "images" / "a.png", img)
    (tmp_path / "masks").mkdir()
    assert main(["init", str(tmp_path / "ws")]) == 0
    return tmp_path, mask


def import_with(capsys, root, *flags):
    return run(capsys, "import", root / "ws", root / "images", "--masks", root / "masks", "--person", "p",
               "--quiet", *flags)


def stored_mask(root):
    with Workspace.open(root / "ws", readonly=True) as ws:
        return ws.mask(ws.frames()[0])


# -- the rules, by hand -------------------------------------------------------------------------------------------
def test_grey_rules_by_hand():
    raw = np.array([[0, 0], [0, 255]], np.uint8)
    assert MaskRule().apply(raw, "m").tolist() == [[0, 0], [0, 1]]
    assert MaskRule(invert=True).apply(raw, "m").tolist() == [[1, 1], [1, 0]]
    assert MaskRule(threshold=100).apply(raw, "m").tolist() == [[0, 0], [0, 1]]
    assert MaskRule(threshold=100, invert=True).apply(raw, "m").tolist() == [[1, 1], [1, 0]]
    assert MaskRule().apply(np.zeros((2, 2), np.uint8), "m").sum() == 0
    assert MaskRule().apply(np.full((2, 2), 7, np.uint8), "m").sum() == 4
    three = np.array([[0, 100], [200, 200]], np.uint8)
    assert MaskRule(threshold=150).apply(three, "m").tolist() == [[0, 0], [1, 1]]
    with pytest.raises(KbhError, match="m: mask has 3 distinct values"):
        MaskRule().apply(three, "m")


def test_a_threshold_that_separates_nothing_is_refused():
    zero_one = np.array([[0, 1], [1, 0]], np.uint8)
    for rule in (MaskRule(threshold=127), MaskRule(threshold=127, invert=True), MaskRule(threshold=-1)):
        with pytest.raises(KbhError, match=r"m.png: --mask-threshold .* puts every pixel on one side \(values 0..1\)"):
            rule.apply(zero_one, "m.png")


def test_colour_rules_by_hand():
    red, blue, black = (255, 0, 0), (0, 0, 255), (0, 0, 0)
    rgb = np.array([[red, blue], [red, red]], np.uint8)
    with pytest.raises(KbhError, match=r"m: colour mask with 2 colours .*--mask-hand-colour R,G,B"):
        MaskRule().apply(rgb, "m")
    assert MaskRule(hand_colour=blue).apply(rgb, "m").tolist() == [[0, 1], [0, 0]]
    assert MaskRule(hand_colour=blue, invert=True).apply(rgb, "m").tolist() == [[1, 0], [1, 1]]
    on_black = np.array([[black, (0, 255, 0)], [black, black]], np.uint8)
    assert MaskRule().apply(on_black, "m").tolist() == [[0, 1], [0, 0]]
    with pytest.raises(KbhError, match="--mask-threshold is for grey masks"):
        MaskRule(threshold=10).apply(rgb, "m")
    with pytest.raises(KbhError, match="a grey mask; --mask-hand-colour"):
        MaskRule(hand_colour=blue).apply(np.zeros((2, 2), np.uint8), "m")
    assert parse_colour("0, 0,255") == blue
    with pytest.raises(KbhError, match="R,G,B"):
        parse_colour("0,0,256")


def test_coverage_warnings_whatever_the_flags():
    assert coverage_warnings({"a": 0.2, "b": 0.3}) == []
    text = " ".join(coverage_warnings({"a": 0.2, "b": 1.0, "c": 0.001}))
    assert "in 2 frame(s)" in text and "b (100.0%)" in text and "c (0.1%)" in text
    assert "median" in " ".join(coverage_warnings({"a": 0.7, "b": 0.8}))


# -- through `kbh import` -----------------------------------------------------------------------------------
def test_threshold_with_invert_on_a_zero_one_mask(frame, capsys):
    root, mask = frame
    cv2.imwrite(str(root / "masks" / "a.png"), mask)  # 0/1 values
    rc, _, err = import_with(capsys, root, "--mask-threshold", "127", "--mask-invert")
    assert rc == 2 and "a.png: --mask-threshold 127 puts every pixel on one side" in err
    with Workspace.open(root / "ws", readonly=True) as ws:
        assert ws.count_frames() == 0  # all or nothing


def test_polarity_warning_also_with_invert(frame, capsys):
    root, mask = frame
    cv2.imwrite(str(root / "masks" / "a.png"), mask * 255)  # hand = 255 already
    rc, _, err = import_with(capsys, root, "--mask-invert")
    assert rc == 0 and "median" in err and "--mask-invert" in err


def test_an_all_zero_mask_with_invert_is_reported(frame, capsys):
    root, _ = frame
    cv2.imwrite(str(root / "masks" / "a.png"), np.zeros((40, 60), np.uint8))
    rc, _, err = import_with(capsys, root, "--mask-invert")
    assert rc == 0 and "over 95%" in err and "(100.0%)" in err
    assert stored_mask(root).all()  # what the flags say, but the person was told


def test_colour_mask_red_background_blue_hand(frame, capsys):
    root, mask = frame
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[mask == 0] = (255, 0, 0)
    rgb[mask == 1] = (0, 0, 255)
    Image.fromarray(rgb).save(root / "masks" / "a.png")
    rc, _, err = import_with(capsys, root)
    assert rc == 2 and "colour mask with 2 colours" in err and "--mask-hand-colour" in err
    rc, _, err = import_with(capsys, root, "--mask-hand-colour", "0,0,255")
    assert rc == 0, err
    np.testing.assert_array_equal(stored_mask(root), mask)


def test_pixel_limit_for_images_and_masks(frame, capsys):
    root, mask = frame
    cv2.imwrite(str(root / "masks" / "a.png"), mask * 255)
    rc, _, err = import_with(capsys, root, "--max-pixels", "1000")
    assert rc == 2 and "a.png: 60x40 is 0 megapixels, over the limit of 0.001" in err and "images" in err
    big = np.zeros((80, 120), np.uint8)
    big[:40, :60] = mask * 255
    cv2.imwrite(str(root / "masks" / "a.png"), big)
    rc, _, err = import_with(capsys, root, "--max-pixels", "5000")
    assert rc == 2 and "masks/a.png: 120x80" in err and "over the limit" in err


def png_header_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (its pixel data is a stub: it must never be decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def test_a_huge_header_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "bomb.png").write_bytes(png_header_claiming(20000, 20000))
    main(["init", str(tmp_path / "ws")])
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a refused image"))
    rc, _, err = run(capsys, "import", tmp_path / "ws", tmp_path / "images", "--person", "p", "--quiet")
    assert rc == 2 and "bomb.png: 20000x20000 is 400 megapixels, over the limit of 50" in err


def test_zero_byte_and_garbage_images(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "empty.png").write_bytes(b"")
    main(["init", str(tmp_path / "ws")])
    rc, _, err = run(capsys, "import", tmp_path / "ws", tmp_path / "images", "--person", "p", "--quiet")
    assert rc == 2 and "empty.png: empty file (0 bytes)" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "images" / "empty.png").write_bytes(b"not an image at all")
    rc, _, err = run(capsys, "import", tmp_path / "ws", tmp_path / "images", "--person", "p", "--quiet")
    assert rc == 2 and "empty.png: not a readable image" in err


def test_masks_pair_by_path_not_by_stem(tmp_path, capsys):
    """Two persons' folders both hold 001.png: each image gets its own folder's mask."""
    masks = {}
    for k, person in enumerate(("p01", "p02")):
        img, mask = blob_image(seed=k)
        mask = np.zeros_like(mask)
        mask[10 + 20 * k:20 + 20 * k, 5:30] = 1
        write_rgb(tmp_path / "images" / person / "001.png", img)
        (tmp_path / "masks" / person).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "masks" / person / "001.png"), mask * 255)
        masks[person] = mask
    main(["init", str(tmp_path / "ws")])
    rc, _, err = run(capsys, "import", tmp_path / "ws", tmp_path / "images", "--masks", tmp_path / "masks",
                     "--person-regex", r"^(p\d+)/", "--quiet")
    assert rc == 0, err
    with Workspace.open(tmp_path / "ws", readonly=True) as ws:
        for f in ws.frames():
            np.testing.assert_array_equal(ws.mask(f), masks[f.person_id])
    cv2.imwrite(str(tmp_path / "masks" / "p01" / "001.bmp"), masks["p01"] * 255)
    rc, _, err = run(capsys, "import", tmp_path / "ws", tmp_path / "images", "--masks", tmp_path / "masks",
                     "--person-regex", r"^(p\d+)/", "--quiet")
    assert rc == 2 and "two masks for 'p01/001'" in err


def test_exif_rotation_does_not_turn_the_image_away_from_its_mask(tmp_path, capsys):
    img, mask = blob_image(h=120, w=160)
    (tmp_path / "images").mkdir()
    exif = Image.Exif()
    exif[274] = 6  # "rotate 90 degrees to display"
    Image.fromarray(img).save(tmp_path / "images" / "a.jpg", exif=exif, quality=95)
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask * 255)
    main(["init", str(tmp_path / "ws")])
    rc, _, err = run(capsys, "import", tmp_path / "ws", tmp_path / "images", "--masks", tmp_path / "masks",
                     "--person", "p", "--quiet")
    assert rc == 0, err
    with Workspace.open(tmp_path / "ws", readonly=True) as ws:
        f = ws.frames()[0]
        assert ws.image(f).shape == (120, 160, 3) and (f.width, f.height) == (160, 120)
        np.testing.assert_array_equal(ws.mask(f), mask)


def test_a_zero_byte_mask(frame, capsys):
    root, _ = frame
    (root / "masks" / "a.png").write_bytes(b"")
    rc, _, err = import_with(capsys, root)
    assert rc == 2 and "a.png: empty file (0 bytes)" in err
