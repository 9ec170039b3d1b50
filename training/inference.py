"""A model's hand probability per iteration on a batch, optionally averaged with the mirrored image's: what
evaluation scores and the sample plots show (one place, so the two cannot disagree)."""

from __future__ import annotations

import torch


def predict_probs(model, x: torch.Tensor, iterations: int, flip: bool = False) -> list[torch.Tensor]:
    """Hand probability (B, H, W) per iteration; with flip, averaged with the mirrored image's prediction."""
    probs = [o.softmax(1)[:, 1] for o in model(x, iterations=iterations)]
    if flip:
        mirrored = [o.softmax(1)[:, 1].flip(-1) for o in model(x.flip(-1), iterations=iterations)]
        probs = [(p + q) / 2 for p, q in zip(probs, mirrored)]
    return probs
