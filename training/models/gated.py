"""`sru<l>` / `dru<l>`: the recurrent U-Net of Wang et al. (ICCV 2019) with single- or dual-gated units.

Level numbering: the U-Net has levels 0..L-1 (widths 8, 16, 32, 64, 128 for L = 5). A level-l model keeps the
encoder and decoder levels 0..l-1 outside the recurrent unit and replaces levels l..L-1 by the gated unit:

    e      = maxpool(encoder levels 0..l-1 of [image, s_{t-1}])   (for l = 0: e = [image, s_{t-1}] itself)
    z      = sigmoid(f_z(e))
    r      = sigmoid(f_r(e))                                     (DRU only)
    h_hat  = tanh(f_h([e, r * h_{t-1}]))   DRU;   tanh(f_h(e))   SRU
    h_t    = z * h_{t-1} + (1 - z) * h_hat
    d      = f_s(h_t)  (1x1 conv: hidden -> width of level l; for l = 0 straight to the class logits)
    logits = decoder levels l-1..0 (d, skips);  s_t = softmax(logits)

f_z, f_r, f_h are encoder-decoder networks with the architecture of the replaced levels (a U-Net over widths
l..L-1 ending in a 1x1 conv to `hidden` channels; at l = L-1 a single conv block), so l = 0 puts whole U-Nets in
the gates and l = 4 only the bottleneck.

Where we depart, and why:
- The paper writes h_hat = tanh(f_h(r * e)). Read literally the previous state never reaches h_hat (it enters
  only through the z interpolation). We follow the authors' released dual-gate unit, where the reset gate
  multiplies the previous state and f_h reads [e, r * h_{t-1}] (a GRU); that unit, at level 4 with a 32-channel
  hidden state, is the one whose size matches the paper's 0.36M for DRU(4): ours has 362,258 parameters.
- The authors' gates end in BatchNorm + ReLU before the sigmoid/tanh, so z, r >= 0.5 and h_hat >= 0; our gate
  networks end in a bare conv (no norm, no ReLU) so the gates can close.
- GroupNorm by default (BatchNorm statistics would be shared across iterations with different inputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel, State, filled, mask_from_logits, mask_from_probability
from .blocks import ConvBlock, Decoder, Encoder, UNet, channel_widths


def gate_network(in_channels: int, out_channels: int, widths: list[int], norm: str) -> nn.Module:
    """Encoder-decoder with the architecture of the replaced levels, ending in a bare conv (pre-activation)."""
    if len(widths) == 1:  # only the bottleneck is replaced: a single conv block
        return ConvBlock(in_channels, out_channels, norm, plain_output=True)
    return UNet(in_channels, out_channels, widths, norm)


class GatedRecurrentUNet(SegmentationModel):
    seedable = True

    def __init__(self, level: int, dual: bool, in_channels: int = 3, num_classes: int = 2, base_channels: int = 8,
                 levels: int = 5, norm: str = "group", hidden: int = 32, init: str = "ones", iterations: int = 3):
        super().__init__(iterations)
        if not 0 <= level < levels:
            raise ValueError(f"level must be in 0..{levels - 1}, got {level}")
        widths = channel_widths(base_channels, levels)
        self.level, self.dual, self.levels = level, dual, levels
        self.num_classes, self.init, self.hidden = num_classes, init, hidden
        in_mask = in_channels + num_classes
        self.encoder = Encoder(in_mask, widths[:level], norm) if level > 0 else None
        e_channels = widths[level - 1] if level > 0 else in_mask
        inner = widths[level:]
        self.f_z = gate_network(e_channels, hidden, inner, norm)
        self.f_r = gate_network(e_channels, hidden, inner, norm) if dual else None
        self.f_h = gate_network(e_channels + hidden if dual else e_channels, hidden, inner, norm)
        self.f_s = nn.Conv2d(hidden, widths[level] if level > 0 else num_classes, 1)
        self.decoder = Decoder(widths[: level + 1], num_classes, norm) if level > 0 else None

    def initial_state(self, x, s0=None) -> State:
        b, (hgt, wid) = x.shape[0], x.shape[-2:]
        s = mask_from_probability(s0) if s0 is not None else filled(x, (b, self.num_classes, hgt, wid), self.init)
        k = 2**self.level
        return s, filled(x, (b, self.hidden, hgt // k, wid // k), self.init)

    def iterate(self, x, state):
        s, h = state
        inp = torch.cat([x, s], dim=1)
        skips = self.encoder(inp) if self.encoder is not None else []
        e = F.max_pool2d(skips[-1], 2) if skips else inp
        z = torch.sigmoid(self.f_z(e))
        if self.dual:
            r = torch.sigmoid(self.f_r(e))
            h_hat = torch.tanh(self.f_h(torch.cat([e, r * h], dim=1)))
        else:
            h_hat = torch.tanh(self.f_h(e))
        h = z * h + (1 - z) * h_hat
        d = self.f_s(h)
        logits = self.decoder(d, skips) if self.decoder is not None else d
        return logits, (mask_from_logits(logits), h)
