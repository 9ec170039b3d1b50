"""The simulated annotator: stroke placement on hand-made masks, and a whole simulated session."""

import cv2
import numpy as np
import pytest

from kbh.simulated_annotator import SimulationResult, human_stroke, next_stroke, simulate
from kbh.strokes import BACKGROUND, FOREGROUND, rasterize


def square(mask, y0, y1, x0, x1, value=1):
    mask[y0:y1, x0:x1] = value
    return mask


def test_none_when_the_mask_is_perfect():
    gt = square(np.zeros((60, 80), np.uint8), 10, 40, 10, 50)
    assert next_stroke(gt.copy(), gt) is None
    assert next_stroke(np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8)) is None


def test_foreground_stroke_goes_into_the_largest_missed_region():
    gt = np.zeros((100, 120), np.uint8)
    square(gt, 10, 30, 10, 30)  # small missed region (400 px)
    square(gt, 50, 90, 40, 110)  # large missed region (2800 px), wider than tall
    mask = np.zeros_like(gt)
    s = next_stroke(mask, gt, radius=5, length=20)
    assert s.label == FOREGROUND
    footprint = rasterize(s, gt.shape)
    assert footprint.any() and (footprint <= square(np.zeros_like(gt), 50, 90, 40, 110)).all()
    # Centred in the region, along its long (horizontal) axis.
    xs = [p[0] for p in s.points]
    ys = [p[1] for p in s.points]
    assert abs(np.mean(ys) - 69.5) <= 1.5 and abs(np.mean(xs) - 74.5) <= 1.5
    assert max(xs) - min(xs) >= 15 and max(ys) - min(ys) <= 1


def test_background_stroke_goes_into_a_false_region():
    gt = square(np.zeros((80, 80), np.uint8), 20, 60, 20, 60)
    mask = gt.copy()
    square(mask, 62, 80, 0, 80)  # a false hand strip along the bottom
    s = next_stroke(mask, gt, radius=4)
    assert s.label == BACKGROUND
    footprint = rasterize(s, gt.shape)
    assert footprint.any() and not (footprint & (gt == 1)).any()
    assert (footprint <= (mask & (1 - gt)).astype(bool)).all()


def test_largest_region_wins_across_both_kinds():
    gt = square(np.zeros((100, 100), np.uint8), 0, 100, 0, 50)
    mask = gt.copy()
    square(mask, 10, 20, 10, 20, 0)  # missed: 100 px
    square(mask, 40, 90, 60, 95, 1)  # false: 1750 px
    assert next_stroke(mask, gt).label == BACKGROUND


def test_stroke_never_touches_the_other_class_and_shrinks_in_thin_regions():
    gt = np.zeros((60, 60), np.uint8)
    square(gt, 10, 50, 28, 34)  # a 6-px-wide "finger"
    s = next_stroke(np.zeros_like(gt), gt, radius=5)
    assert s is not None and s.label == FOREGROUND and s.radius < 5
    assert not (rasterize(s, gt.shape) & (gt == 0)).any()
    # A 1-px sliver cannot take any stroke without touching the other class.
    sliver = np.zeros((30, 30), np.uint8)
    sliver[5:25, 15] = 1
    assert next_stroke(np.zeros_like(sliver), sliver) is None


def test_next_stroke_is_deterministic():
    rng = np.random.default_rng(0)
    gt = (cv2.GaussianBlur(rng.random((64, 64)).astype(np.float32), (0, 0), 4) > 0.5).astype(np.uint8)
    mask = np.zeros_like(gt)
    assert next_stroke(mask, gt) == next_stroke(mask, gt)


def test_simulate_improves_on_an_easy_image():
    rng = np.random.default_rng(1)
    gt = np.zeros((90, 120), np.uint8)
    cv2.circle(gt, (60, 45), 28, 1, -1)
    image = np.where(gt[..., None] == 1, np.array([210, 160, 130]), np.array([40, 90, 60])).astype(np.float32)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    r = simulate(image, gt, max_strokes=6)
    assert isinstance(r, SimulationResult)
    assert r.ious[0] == 0.0 and len(r.seconds) == len(r.ious) - 1 == len(r.strokes)
    assert r.ious[-1] > 0.9
    assert max(r.ious) - r.ious[-1] < 0.05  # no big relapse
    assert r.strokes_to(0.9) <= 3
    assert r.iou_after(100) == r.ious[-1]


def test_strokes_to_is_capped():
    r = SimulationResult(ious=[0.1, 0.5, 0.8], seconds=[0.0, 0.0], max_strokes=20)
    assert r.strokes_to(0.5) == 1 and r.strokes_to(0.9) == 20 and not r.reached(0.9)


def test_shapes_must_match():
    with pytest.raises(ValueError):
        next_stroke(np.zeros((4, 4)), np.zeros((5, 5)))


def test_bench_annotate_command_on_a_small_workspace(tmp_path, capsys):
    import json

    from kbh.cli import main
    from kbh.workspace import Workspace

    rng = np.random.default_rng(2)
    ws = Workspace.init(tmp_path / "ws")
    with ws.transaction():
        ws.upsert_person("p1")
        ws.upsert_sequence("s1", "p1")
    ids, gts = [], []
    for i in range(2):
        gt = np.zeros((60, 80), np.uint8)
        cv2.circle(gt, (35 + 4 * i, 30), 16, 1, -1)
        image = np.where(gt[..., None] == 1, np.array([210, 160, 130]), np.array([40, 90, 60])).astype(np.float32)
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        ids.append(ws.add_image("s1", i, image))
        gts.append(gt)
    for fid, gt in zip(ids, gts):
        ws.save_annotation(fid, mask=gt, status="done", source="import")
    ws.close()
    out = tmp_path / "bench.json"
    assert main(["bench", "annotate", str(tmp_path / "ws"), "--max-strokes", "5", "--protocol", "human",
                 "--size", "48x64", "--json", str(tmp_path / "human.json")]) == 0
    human = json.loads((tmp_path / "human.json").read_text())
    assert human["protocol"] == "human" and human["size"] == "48x64" and human["starts"]["strokes"]["frames"] == 2
    assert main(["bench", "annotate", str(tmp_path / "ws"), "--engine", "nope"]) == 2
    assert "unknown engine 'nope'" in capsys.readouterr().err
    assert main(["bench", "annotate", str(tmp_path / "ws"), "--max-strokes", "5", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())["starts"]
    assert figures["strokes"]["frames"] == 2 and figures["propagated"]["frames"] == 1
    assert "model" not in figures  # no predictions stored
    assert figures["strokes"]["iou@5"] > 0.9
    assert "NoC@90" in capsys.readouterr().out


# ---- the human protocol ----------------------------------------------------------------------------------------

def hand_ellipse(h=200, w=240, angle=30):
    gt = np.zeros((h, w), np.uint8)
    cv2.ellipse(gt, (w // 2, h // 2), (90, 30), angle, 0, 360, 1, -1)
    return gt


def stroke_extent(stroke):
    pts = np.asarray(stroke.points)
    return float(np.linalg.norm(pts[-1] - pts[0])) if len(pts) > 1 else 0.0


def test_human_first_stroke_is_long_and_along_the_hand():
    gt = hand_ellipse()
    for seed in range(10):
        s = human_stroke(np.zeros_like(gt), gt, np.random.default_rng(seed), radius=5, first=True)
        assert s.label == FOREGROUND
        assert not (rasterize(s, gt.shape) & (gt == 0)).any()
        # The ellipse's main axis is 180 px long; the stroke covers 40-70% of 4 sigma (~180 px) where it fits.
        assert stroke_extent(s) > 50
        pts = np.asarray(s.points)
        d = pts[-1] - pts[0]
        angle = np.degrees(np.arctan2(d[1], d[0])) % 180
        assert min(abs(angle - 30), 180 - abs(angle - 30)) < 30


def test_human_corrections_are_seeded_off_centre_and_20_to_60_px():
    gt = np.zeros((200, 300), np.uint8)
    gt[20:180, 20:280] = 1
    mask = np.zeros_like(gt)
    mask[20:180, 20:150] = 1  # the right half of the hand is missed: a 160x130 error region
    strokes = [human_stroke(mask, gt, np.random.default_rng(seed), radius=4) for seed in range(12)]
    assert strokes[0] == human_stroke(mask, gt, np.random.default_rng(0), radius=4)  # same seed, same stroke
    starts = {s.points[0] for s in strokes}
    assert len(starts) > 6  # not always the region's centre
    for s in strokes:
        assert s.label == FOREGROUND and not (rasterize(s, gt.shape) & (gt == 0)).any()
        assert 0 < stroke_extent(s) <= 60 + 3 * 2.0  # jitter moves the ends by a few pixels


@pytest.mark.parametrize("seed", range(6))
def test_human_strokes_never_cross_into_the_other_class(seed):
    rng = np.random.default_rng(seed)
    gt = np.zeros((120, 160), np.uint8)
    for _ in range(3):
        cv2.circle(gt, (int(rng.integers(20, 140)), int(rng.integers(20, 100))), int(rng.integers(8, 30)), 1, -1)
    mask = np.zeros_like(gt)
    cv2.circle(mask, (int(rng.integers(20, 140)), int(rng.integers(20, 100))), int(rng.integers(8, 40)), 1, -1)
    for first in (True, False):
        s = human_stroke(mask, gt, np.random.default_rng(seed), radius=5, first=first)
        if s is None:
            continue
        same = gt.astype(bool) if s.label == FOREGROUND else ~gt.astype(bool)
        assert not (rasterize(s, gt.shape) & ~same).any()


def test_simulate_with_the_human_protocol_is_seeded():
    from kbh.grabcut import GrabCutSession

    gt = hand_ellipse(120, 160)
    rng = np.random.default_rng(0)
    image = np.where(gt[..., None] == 1, np.array([210, 160, 130]), np.array([40, 90, 60])).astype(np.float32)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    a = simulate(image, gt, max_strokes=3, protocol="human", seed=4, session_factory=GrabCutSession)
    b = simulate(image, gt, max_strokes=3, protocol="human", seed=4, session_factory=GrabCutSession)
    assert a.strokes == b.strokes and a.ious == b.ious
    assert stroke_extent(a.strokes[0]) > 30  # the long first stroke
    with pytest.raises(ValueError):
        simulate(image, gt, protocol="sloppy")
