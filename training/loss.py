"""Training loss over the iterations of a recurrent model (Wang et al., ICCV 2019, Eq. 6).

L = sum_{t=1..N} alpha^(N-t) * CE(logits_t, target): the last iteration weighs 1, earlier ones alpha^(N-t). The
paper's alpha is 0.4; kbh's default is 1 (all iterations weigh the same), which on DRIVE gave a first iteration
as good as the paper's weighting gives its later ones and no decline past t = 2 (docs/training.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def iteration_weights(n: int, alpha: float) -> list[float]:
    """[alpha^(n-1), ..., alpha, 1] for iterations t = 1..n."""
    return [alpha ** (n - t) for t in range(1, n + 1)]


DEFAULT_ALPHA = 1.0  # every iteration weighs the same: measured in docs/training.md, "Iterations that refine"


def recurrent_loss(outputs: list[torch.Tensor], target: torch.Tensor, alpha: float = DEFAULT_ALPHA,
                   ignore_index: int = 255) -> tuple[torch.Tensor, list[float]]:
    """Weighted sum of per-iteration cross-entropies; also returns each iteration's CE as floats (for logs).

    outputs: list of logits (B, 2, H, W), one per iteration; target: int64 (B, H, W) in {0, 1}.
    """
    if not outputs:
        raise ValueError("model returned no outputs")
    weights = iteration_weights(len(outputs), alpha)
    losses = [F.cross_entropy(logits, target, ignore_index=ignore_index) for logits in outputs]
    total = sum(w * l for w, l in zip(weights, losses))
    return total, [float(l.detach()) for l in losses]
