"""`canvas`: the additive-canvas recurrent segmenter of McIntosh et al. ("Recurrent Segmentation for Variable
Computational Budgets", CVPR-W 2018).

Image features are computed once; at every iteration stacked 1x1 conv-LSTMs read [features, canvas] and a 1x1
conv of the top LSTM's output is added to the canvas; the canvas (class logits) is the iteration's output.

Departures, and why:
- No pretrained ResNet can be had here, so the features come from a U-Net (the same 8..128 encoder, and its
  decoder, so the canvas lives at full resolution instead of being up-sampled from 1/8 as in the paper:
  a 1x1 LSTM on a coarse grid would give blocky hand outlines at this small width).
- The canvas starts at zero logits (uniform probability) as in the paper; seeding with a previous frame's hand
  probability p sets it to [log(1-p), log p] (whose softmax is exactly [1-p, p]). LSTM states start at zero.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SegmentationModel, State
from .blocks import UNet, channel_widths

_EPS = 1e-4


class ConvLSTMCell1x1(nn.Module):
    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, 1)

    def forward(self, x, h, c):
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class CanvasSegmenter(SegmentationModel):
    seedable = True
    final_loss_only = True  # McIntosh et al. put the loss on the final canvas only (train.py reads this)

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channels: int = 8, levels: int = 5,
                 norm: str = "group", features: int = 16, hidden: int = 32, lstm_layers: int = 2,
                 iterations: int = 3):
        super().__init__(iterations)
        if lstm_layers < 1:
            raise ValueError(f"lstm_layers must be >= 1, got {lstm_layers}")
        self.num_classes, self.hidden = num_classes, hidden
        self.backbone = UNet(in_channels, features, channel_widths(base_channels, levels), norm)
        chans = [features + num_classes] + [hidden] * lstm_layers
        self.cells = nn.ModuleList(ConvLSTMCell1x1(chans[k], hidden) for k in range(lstm_layers))
        self.to_canvas = nn.Conv2d(hidden, num_classes, 1)

    def initial_state(self, x, s0=None) -> State:
        b, (hgt, wid) = x.shape[0], x.shape[-2:]
        if s0 is not None:
            p = s0.clamp(_EPS, 1 - _EPS)
            canvas = torch.cat([torch.log1p(-p), torch.log(p)], dim=1)
        else:
            canvas = x.new_zeros((b, self.num_classes, hgt, wid))
        zeros = x.new_zeros((b, self.hidden, hgt, wid))
        return (canvas,) + (zeros,) * (2 * len(self.cells))

    def prepare(self, x):
        return self.backbone(x)  # features once per image

    def iterate(self, feats, state):
        canvas, rest = state[0], state[1:]
        inp, new = torch.cat([feats, canvas], dim=1), []
        for k, cell in enumerate(self.cells):
            h, c = cell(inp, rest[2 * k], rest[2 * k + 1])
            new += [h, c]
            inp = h
        canvas = canvas + self.to_canvas(inp)
        return canvas, (canvas, *new)
