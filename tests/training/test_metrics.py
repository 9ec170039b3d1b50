import math

import numpy as np
import pytest
import torch

from training.metrics import IterationScorer, break_even_point, scores_from_confusion


def test_scores_against_hand_computed_confusion():
    # rows = ground truth (bg, hand), columns = prediction
    cm = [[50, 10],
          [5, 35]]
    s = scores_from_confusion(cm)
    iou = [50 / (60 + 55 - 50), 35 / (40 + 45 - 35)]
    recall = [50 / 60, 35 / 40]          # TP / (TP + FN): row sums
    precision = [50 / 55, 35 / 45]       # TP / (TP + FP): column sums
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    assert s["iou"] == pytest.approx(iou)
    assert s["recall"] == pytest.approx(recall)
    assert s["precision"] == pytest.approx(precision)
    assert s["miou"] == pytest.approx(np.mean(iou))
    assert s["mean_recall"] == pytest.approx(np.mean(recall))
    assert s["mean_precision"] == pytest.approx(np.mean(precision))
    assert s["mean_f1"] == pytest.approx(np.mean(f1))
    # not swapped (the authors' code calls recall "precision")
    assert s["mean_recall"] != pytest.approx(s["mean_precision"])


def test_hand_never_predicted_scores_zero_not_undefined():
    s = scores_from_confusion([[10, 0], [5, 0]])
    assert s["iou"][1] == 0 and s["precision"][1] == 0 and s["recall"][1] == 0 and s["f1"][1] == 0
    assert s["mean_precision"] == pytest.approx((10 / 15 + 0) / 2)


def test_class_absent_everywhere_is_left_out():
    s = scores_from_confusion([[10, 0], [0, 0]])
    assert math.isnan(s["iou"][1])
    assert s["miou"] == 1.0 and s["mean_f1"] == 1.0


def test_break_even_exact_and_interpolated():
    # thresholds k=0..4: TP=[4,4,3,2,0], FP=[4,2,1,0,0] -> P=R=0.75 exactly at k=2
    assert break_even_point([0, 1, 1, 2], [2, 1, 1, 0]) == pytest.approx(0.75)
    # TP=[4,4,4,2,0], FP=[6,4,2,1,0]: R=[1,1,1,.5,0], P=[.4,.5,2/3,2/3,1]; P-R changes sign between k=2 and 3:
    # d2=-1/3, d3=1/6 -> f=2/3 -> R = 1 + 2/3 * (0.5 - 1) = 2/3 (= interpolated P)
    assert break_even_point([0, 0, 2, 2], [2, 2, 1, 1]) == pytest.approx(2 / 3)
    # perfect separation: break-even at 1
    assert break_even_point([0, 0, 0, 5], [5, 0, 0, 0]) == pytest.approx(1.0)
    assert math.isnan(break_even_point([0, 0], [3, 1]))


def test_scorer_matches_numpy_and_resets():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 2, (2, 6, 9), generator=g)
    target[0, 0, :3] = 255  # ignored pixels
    probs = [torch.rand(2, 6, 9, generator=g) for _ in range(2)]
    sc = IterationScorer(3, bins=10)
    sc.update(probs, target)
    valid = target != 255
    for t, p in enumerate(probs):
        gt, pred = target[valid].numpy(), (p[valid] > 0.5).numpy().astype(int)
        expected = np.array([[np.sum((gt == a) & (pred == b)) for b in (0, 1)] for a in (0, 1)])
        assert np.array_equal(sc.confusion[t].numpy(), expected)
        assert sc.hist[t].sum().item() == valid.sum().item()
        hand_bins = np.clip((p[valid][target[valid] == 1].numpy() * 10).astype(int), 0, 9)
        assert np.array_equal(sc.hist[t, 1].numpy(), np.bincount(hand_bins, minlength=10))
    assert sc.confusion[2].sum() == 0  # iteration 3 not given
    res = sc.results(upto=2)
    assert [r["iteration"] for r in res] == [1, 2]
    assert res[0]["miou"] == pytest.approx(scores_from_confusion(sc.confusion[0].numpy())["miou"])
    sc.reset()
    assert sc.confusion.sum() == 0 and sc.hist.sum() == 0
    with pytest.raises(ValueError):
        sc.update(probs * 2, target)
