"""The simulated annotator: stroke placement on hand-made masks, and a whole simulated session."""

import cv2
import numpy as np
import pytest

from kbh.simulate import SimulationResult, next_stroke, simulate
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
    from kbh.imageio import sha256_bytes
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
        data = cv2.imencode(".png", image[..., ::-1])[1].tobytes()
        with ws.transaction():
            ids.append(ws.add_frame("s1", i, data, ".png", 80, 60, sha256_bytes(data)))
        gts.append(gt)
    for fid, gt in zip(ids, gts):
        ws.save_annotation(fid, mask=gt, status="done", source="import")
    ws.close()
    out = tmp_path / "bench.json"
    assert main(["bench", "annotate", str(tmp_path / "ws"), "--max-strokes", "5", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())["starts"]
    assert figures["strokes"]["frames"] == 2 and figures["propagated"]["frames"] == 1
    assert "model" not in figures  # no predictions stored
    assert figures["strokes"]["iou@5"] > 0.9
    assert "NoC@90" in capsys.readouterr().out
