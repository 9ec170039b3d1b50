"""`unet-g` / `unet-b`: the single-pass U-Net baselines (image only, one iteration)."""

from __future__ import annotations

import torch

from .base import SegmentationModel, State
from .blocks import UNet, channel_widths


class UNetSegmenter(SegmentationModel):
    recurrent = False
    seedable = False

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channels: int = 8, levels: int = 5,
                 norm: str = "group"):
        super().__init__(iterations=1)
        self.num_classes = num_classes
        self.net = UNet(in_channels, num_classes, channel_widths(base_channels, levels), norm)

    def initial_state(self, x: torch.Tensor, s0: torch.Tensor | None = None) -> State:
        return ()

    def iterate(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.net(x), ()
