"""The interface every model shares.

A model runs as a loop of `step`s: `initial_state(x, s0)` builds the state (previous mask and/or hidden
state), `step(x, state)` returns one iteration's logits and the next state, and `forward` returns the logits of
every iteration so evaluation and the annotator can stop at any one (and run past the trained count: the anytime
curve). `step` is also what `kbh export-model --mode step` exports for streaming video.
"""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, ...]
INITS = ("ones", "zeros")


class SegmentationModel(nn.Module):
    """Base class. Subclasses set `recurrent`, `seedable` and implement initial_state/step."""

    recurrent: bool = True
    seedable: bool = False  # whether s0 (a previous frame's hand probability) can seed the mask input
    num_classes: int = 2

    def __init__(self, iterations: int):
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.default_iterations = iterations
        self.config: dict = {}  # set by build_model: {"name": ..., **constructor kwargs}

    def initial_state(self, x: torch.Tensor, s0: torch.Tensor | None = None) -> State:
        raise NotImplementedError

    def prepare(self, x: torch.Tensor):
        """Image-only work shared by all iterations on one image (default: none, the image itself)."""
        return x

    def iterate(self, prepared, state: State) -> tuple[torch.Tensor, State]:
        """One iteration from prepare(x)'s result: (logits, next state)."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One self-contained iteration on image x (what the streaming ONNX export runs per video frame)."""
        return self.iterate(self.prepare(x), state)

    def iterations_to_run(self, iterations: int | None = None) -> int:
        """How many outputs a forward pass gives when asked for `iterations` (default: the model's own):
        that many for a recurrent model, one for the others. The one place that rule lives."""
        n = iterations if iterations is not None else self.default_iterations
        return n if self.recurrent else 1

    def forward(self, x: torch.Tensor, iterations: int | None = None, s0: torch.Tensor | None = None,
                stop_mask_gradient: bool = False) -> list[torch.Tensor]:
        """x: (B,3,H,W) normalised image; s0: optional (B,1,H,W) hand probability in [0,1] of a previous frame.
        Returns a list of (B,2,H,W) logits, one per iteration (one only for non-recurrent models).

        stop_mask_gradient (training): the fed-back mask s_{t-1} enters the next iteration as a constant, so each
        iteration learns to refine the mask it is given rather than to shape it for the next (the hidden state
        of a gated model still carries gradients back)."""
        if x.dim() != 4:
            raise ValueError(f"expected a (B,C,H,W) image batch, got shape {tuple(x.shape)}")
        if s0 is not None:
            if not self.seedable:
                raise ValueError(f"model {self.config.get('name', type(self).__name__)} has no mask input to seed with s0")
            if s0.dim() != 4 or s0.shape[1] != 1 or s0.shape[0] != x.shape[0] or s0.shape[-2:] != x.shape[-2:]:
                raise ValueError(f"s0 must have shape (B,1,H,W) = {(x.shape[0], 1, *x.shape[-2:])}, got {tuple(s0.shape)}")
        if iterations is not None and iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        n = self.iterations_to_run(iterations)
        prepared, state = self.prepare(x), self.initial_state(x, s0)
        outs = []
        for _ in range(n):
            logits, state = self.iterate(prepared, state)
            if stop_mask_gradient and self.seedable:  # seedable models keep the mask first in their state
                state = (state[0].detach(), *state[1:])
            outs.append(logits)
        return outs


def mask_from_probability(p: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) hand probability -> the 2-channel mask input [background, hand] the models are fed."""
    p = p.clamp(0.0, 1.0)
    return torch.cat([1.0 - p, p], dim=1)


def mask_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """The fed-back mask s_t: the softmax over classes. For two classes it is computed as [1-p, p] with
    p = sigmoid(l_hand - l_background), the same numbers, but one element-wise pass instead of a strided
    reduction over a 2-channel axis (4-5% of a dru4 iteration in ONNX Runtime)."""
    if logits.shape[1] == 2:
        p = torch.sigmoid(logits[:, 1:2] - logits[:, 0:1])
        return torch.cat([1.0 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def filled(like: torch.Tensor, shape: tuple[int, ...], init: str) -> torch.Tensor:
    """A tensor of `shape` filled per `init` ("ones": the paper's choice, validated over zeros)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
    fill = torch.ones if init == "ones" else torch.zeros
    t = fill(shape, dtype=like.dtype, device=like.device)
    if len(shape) == 4 and like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        t = t.contiguous(memory_format=torch.channels_last)  # keep a channels_last run free of layout copies
    return t
