"""The recurrent baselines of the paper: `rec-simple`, `rec-last`, `rec-middle`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel, State, filled, mask_from_logits, mask_from_probability
from .blocks import ConvGRUCell, Decoder, Encoder, UNet, channel_widths


class RecSimple(SegmentationModel):
    """Mask recurrence only: the U-Net reads [image, s_{t-1}] and its softmax becomes s_t; no hidden state.

    s_{t-1} is the 2-channel softmax (background, hand) of the previous logits; s0 is ones (paper) or zeros,
    or [1-p, p] for a previous frame's hand probability p."""

    seedable = True

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channels: int = 8, levels: int = 5,
                 norm: str = "group", init: str = "ones", iterations: int = 3):
        super().__init__(iterations)
        self.num_classes, self.init = num_classes, init
        self.net = UNet(in_channels + num_classes, num_classes, channel_widths(base_channels, levels), norm)

    def initial_state(self, x, s0=None) -> State:
        if s0 is not None:
            return (mask_from_probability(s0),)
        return (filled(x, (x.shape[0], self.num_classes, *x.shape[-2:]), self.init),)

    def iterate(self, x, state):
        (s,) = state
        logits = self.net(torch.cat([x, s], dim=1))
        return logits, (mask_from_logits(logits),)


class RecLast(SegmentationModel):
    """Conv-GRU after the U-Net output (the paper's Rec-Last): the U-Net (image only) gives `hidden` feature
    channels at full resolution, a conv-GRU iterates on them, a 1x1 conv gives the logits. No mask input, so
    it cannot be seeded with s0. The U-Net's output does not change between iterations of one image, so `forward` computes it once."""

    seedable = False

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channels: int = 8, levels: int = 5,
                 norm: str = "group", hidden: int = 32, init: str = "ones", iterations: int = 3):
        super().__init__(iterations)
        self.num_classes, self.init, self.hidden = num_classes, init, hidden
        self.net = UNet(in_channels, hidden, channel_widths(base_channels, levels), norm)
        self.gru = ConvGRUCell(hidden, hidden)
        self.classifier = nn.Conv2d(hidden, num_classes, 1)

    def initial_state(self, x, s0=None) -> State:
        return (filled(x, (x.shape[0], self.hidden, *x.shape[-2:]), self.init),)

    def prepare(self, x):
        return self.net(x)

    def iterate(self, feats, state):
        h = self.gru(feats, state[0])
        return self.classifier(h), (h,)


class RecMiddle(SegmentationModel):
    """Conv-GRU at the bottleneck, image only (the paper's Rec-Middle): the encoder's levels above the
    bottleneck, a standard conv-GRU (single 3x3 convs over [features, state]) in place of the bottleneck block,
    a 1x1 conv from the `hidden` state to the bottleneck width, the usual decoder. Same hidden width (32) and
    place as `dru4`, so the two differ by the mask input and the gate networks. Not seedable."""

    seedable = False

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channels: int = 8, levels: int = 5,
                 norm: str = "group", hidden: int = 32, init: str = "ones", iterations: int = 3):
        super().__init__(iterations)
        if levels < 2:
            raise ValueError("rec-middle needs levels >= 2")
        widths = channel_widths(base_channels, levels)
        self.num_classes, self.init, self.hidden, self.levels = num_classes, init, hidden, levels
        self.encoder = Encoder(in_channels, widths[:-1], norm)
        self.gru = ConvGRUCell(widths[-2], hidden)
        self.to_bottleneck = nn.Conv2d(hidden, widths[-1], 1)
        self.decoder = Decoder(widths, num_classes, norm)

    def initial_state(self, x, s0=None) -> State:
        k = 2 ** (self.levels - 1)
        return (filled(x, (x.shape[0], self.hidden, x.shape[-2] // k, x.shape[-1] // k), self.init),)

    def prepare(self, x):
        return self.encoder(x)  # image-only encoder: once per image

    def iterate(self, skips, state):
        h = self.gru(F.max_pool2d(skips[-1], 2), state[0])
        return self.decoder(self.to_bottleneck(h), skips), (h,)
