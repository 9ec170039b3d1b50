"""Segmentation metrics from one confusion matrix per iteration (torchvision references/segmentation style).

Rows of the confusion matrix are the ground truth, columns the prediction; classes 0 = background, 1 = hand.
Every score is computed over the whole split (pixels pooled over frames), for both classes, then averaged:
- IoU_c = TP / (TP + FP + FN); mIoU = mean over classes
- recall_c = TP / (TP + FN)  (the authors' released code calls this "precision": we use the standard names)
- precision_c = TP / (TP + FP)
- F1_c = 2 P R / (P + R); mean F1 = mean of the per-class F1
- BEP: precision/recall break-even point of the hand class, from histograms of the predicted hand probability
  of hand and background pixels, interpolated linearly between the two thresholds where P - R changes sign.
"""

from __future__ import annotations

import math

import numpy as np
import torch

HIST_BINS = 1000
REPORTED = ("miou", "mean_recall", "mean_precision", "mean_f1", "bep")  # what train and eval report, by name


def confusion(pred: torch.Tensor, gt: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    """(C, C) int64 counts: rows the ground truth, columns the prediction (integer class tensors, any shape)."""
    c = num_classes
    return torch.bincount(gt.reshape(-1).long() * c + pred.reshape(-1).long(), minlength=c * c).view(c, c)


def scores_from_confusion(cm) -> dict:
    """mIoU, mean recall, mean precision, mean F1 (and per-class lists) of a (C, C) confusion matrix.

    A class that appears neither in the ground truth nor in the prediction is left out of the means (NaN); for a
    class that appears, an empty denominator scores 0 (e.g. hand never predicted: hand precision 0, not
    "undefined", so predicting all background cannot earn a high mean precision).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)  # TP + FN
    pred = cm.sum(axis=0)  # TP + FP
    present = (gt + pred) > 0

    def ratio(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)
        return np.where(present, r, np.nan)

    iou = ratio(tp, gt + pred - tp)
    recall = ratio(tp, gt)
    precision = ratio(tp, pred)
    f1 = ratio(2 * precision * recall, precision + recall)

    def mean(v):
        return float(np.nanmean(v)) if np.any(~np.isnan(v)) else math.nan

    return {"miou": mean(iou), "mean_recall": mean(recall), "mean_precision": mean(precision), "mean_f1": mean(f1),
            "iou": iou.tolist(), "recall": recall.tolist(), "precision": precision.tolist(), "f1": f1.tolist()}


def break_even_point(pos_hist, neg_hist) -> float:
    """Precision = recall point of the hand class from probability histograms over equal bins of [0, 1].

    pos_hist[k] / neg_hist[k]: hand / background pixels whose hand probability falls in bin k. A pixel is called
    hand at threshold k when its bin is >= k, for k = 0..K (k = K calls nothing hand: precision is taken as 1,
    recall 0). Recall falls from 1 to 0 as k grows; the first k where precision >= recall brackets the crossing,
    and P and R are interpolated linearly to the point where they are equal. NaN when there is no hand pixel.
    """
    pos = np.asarray(pos_hist, dtype=np.float64)
    neg = np.asarray(neg_hist, dtype=np.float64)
    npos = pos.sum()
    if npos == 0:
        return math.nan
    # TP(k), FP(k) for k = 0..K: pixels in bins >= k (reverse cumulative sums, with 0 appended for k = K).
    tp = np.append(np.cumsum(pos[::-1])[::-1], 0.0)
    fp = np.append(np.cumsum(neg[::-1])[::-1], 0.0)
    recall = tp / npos
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 1.0)
    d = precision - recall
    k = int(np.argmax(d >= 0))  # exists: d[K] = 1 - 0 > 0
    if k == 0:
        return float(recall[0] if d[0] == 0 else (precision[0] + recall[0]) / 2)
    f = -d[k - 1] / (d[k] - d[k - 1])
    return float(recall[k - 1] + f * (recall[k] - recall[k - 1]))


class IterationScorer:
    """Confusion matrices and hand-probability histograms for iterations 1..T, accumulated over a split.

    Call reset() before each split (the authors' code never reset its scorers between splits).
    """

    def __init__(self, iterations: int, num_classes: int = 2, bins: int = HIST_BINS, device="cpu"):
        self.iterations, self.num_classes, self.bins, self.device = iterations, num_classes, bins, device
        self.reset()

    def reset(self) -> None:
        t, c, b = self.iterations, self.num_classes, self.bins
        self.confusion = torch.zeros(t, c, c, dtype=torch.int64, device=self.device)
        self.hist = torch.zeros(t, 2, b, dtype=torch.int64, device=self.device)  # [t, gt class, bin]

    @torch.no_grad()
    def update(self, probs: list[torch.Tensor], target: torch.Tensor) -> None:
        """probs: per iteration, hand probability (B, H, W) in [0, 1]; target int (B, H, W) in {0, 1} (255 ignored)."""
        if len(probs) > self.iterations:
            raise ValueError(f"scorer holds {self.iterations} iterations, got {len(probs)}")
        valid = target != 255
        gt = target[valid].long()
        c, b = self.num_classes, self.bins
        for t, p in enumerate(probs):
            p = p[valid].float()
            pred = (p > 0.5).long()
            self.confusion[t] += confusion(pred, gt, c)
            bins = (p * b).long().clamp_(0, b - 1)
            self.hist[t] += torch.bincount(gt * b + bins, minlength=2 * b).view(2, b)

    def all_reduce(self) -> None:
        """Sum over processes (DDP): every rank then holds the scores of the whole split."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.confusion)
            dist.all_reduce(self.hist)

    def results(self, upto: int | None = None) -> list[dict]:
        """[{"iteration": t, "miou", "mean_recall", "mean_precision", "mean_f1", "bep", "iou", ...}, ...]"""
        out = []
        for t in range(upto or self.iterations):
            r = scores_from_confusion(self.confusion[t].cpu().numpy())
            h = self.hist[t].cpu().numpy()
            r["bep"] = break_even_point(h[1], h[0])
            out.append({"iteration": t + 1, **r})
        return out
