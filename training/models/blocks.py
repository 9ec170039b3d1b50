"""Building blocks shared by every model: the U-Net conv block, encoder, decoder and a conv-GRU cell.

The U-Net follows Wang et al. (ICCV 2019) and the issue: per level two 3x3 convs (padding 1), each followed by a
norm and ReLU; max-pool 2 between levels; ConvTranspose2d(2x2, stride 2) up-sampling whose output is zero-padded
to the skip's size, so odd sizes (230x306: 230 -> 115 -> 57 -> 28 -> 14) come back to the input size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("group", "batch", "none")
GROUPS = 4  # GroupNorm groups; see make_norm


def make_norm(kind: str, channels: int) -> nn.Module:
    """A norm layer by name.

    GroupNorm uses gcd(4, C) groups: the top level has only 8 channels, so the usual 32 groups of Wu & He are
    impossible there; 4 groups keeps at least 2 channels per group at every level (8..128 and the 32-channel
    hidden states) and the same rule everywhere. BatchNorm is kept for `unet-b` (the paper's U-Net-B); it can be
    folded into the preceding conv at inference time (fold_batchnorm)."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(GROUPS, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected one of {', '.join(NORMS)}")


class ConvBlock(nn.Module):
    """Two 3x3 convs (padding 1), each followed by norm and ReLU.

    With `plain_output=True` the second conv is left bare (no norm, no ReLU): used where the block's output is a
    gate pre-activation. (The authors' code ends gates with ReLU, which makes sigmoid(.) >= 0.5 always; we
    depart from that.)"""

    def __init__(self, in_channels: int, out_channels: int, norm: str, plain_output: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm1 = make_norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.plain_output = plain_output
        self.norm2 = nn.Identity() if plain_output else make_norm(norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.norm2(self.conv2(x))
        return x if self.plain_output else F.relu(x)


def channel_widths(base_channels: int, levels: int) -> list[int]:
    """Channels per level: base, 2*base, ... (8, 16, 32, 64, 128 by default)."""
    if base_channels < 1 or levels < 1:
        raise ValueError(f"base_channels and levels must be positive, got {base_channels}, {levels}")
    return [base_channels * 2**k for k in range(levels)]


class Encoder(nn.Module):
    """Conv blocks at successive levels; block k reads the max-pooled output of block k-1.

    Returns every block's output (the skips; the last one is the deepest level, not pooled)."""

    def __init__(self, in_channels: int, widths: list[int], norm: str):
        super().__init__()
        chans = [in_channels, *widths]
        self.blocks = nn.ModuleList(ConvBlock(chans[k], chans[k + 1], norm) for k in range(len(widths)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for k, block in enumerate(self.blocks):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats


def pad_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Zero-pad x at the bottom/right to ref's spatial size (pooling floors odd sizes, up-sampling doubles)."""
    dh = ref.shape[-2] - x.shape[-2]
    dw = ref.shape[-1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (0, dw, 0, dh))


class Decoder(nn.Module):
    """Up-sampling path from widths[-1] back to widths[0], then a 1x1 classifier to out_channels.

    forward(bottom, skips): bottom has widths[-1] channels; skips[k] has widths[k] channels (k < len(widths)-1)."""

    def __init__(self, widths: list[int], out_channels: int, norm: str):
        super().__init__()
        n = len(widths)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[k + 1], widths[k], 2, stride=2) for k in reversed(range(n - 1)))
        self.blocks = nn.ModuleList(ConvBlock(2 * widths[k], widths[k], norm) for k in reversed(range(n - 1)))
        self.classifier = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, bottom: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = bottom
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips)):
            x = block(torch.cat([skip, pad_to(up(x), skip)], dim=1))
        return self.classifier(x)


class UNet(nn.Module):
    """Plain U-Net: Encoder over all widths, Decoder back, 1x1 to out_channels (logits or features)."""

    def __init__(self, in_channels: int, out_channels: int, widths: list[int], norm: str):
        super().__init__()
        self.encoder = Encoder(in_channels, widths, norm)
        self.decoder = Decoder(widths, out_channels, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        return self.decoder(feats[-1], feats[:-1])


class ConvGRUCell(nn.Module):
    """Standard convolutional GRU (Ballas et al.) with single 3x3 convs over [input, state]; used by the
    `rec-last` and `rec-middle` baselines. Same gate convention as the issue: h = z*h_prev + (1-z)*h_hat."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 2 * hidden, kernel_size, padding=pad)
        self.candidate = nn.Conv2d(in_channels + hidden, hidden, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        h_hat = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        return z * h + (1 - z) * h_hat


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm of a ConvBlock into its conv (inference only; GroupNorm cannot be folded
    because its statistics depend on the input). Returns the model, changed in place."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for block in model.modules():
        if not isinstance(block, ConvBlock):
            continue
        for conv_name, norm_name in (("conv1", "norm1"), ("conv2", "norm2")):
            norm = getattr(block, norm_name)
            if isinstance(norm, nn.BatchNorm2d):
                if norm.training:
                    raise ValueError("fold_batchnorm needs the model in eval mode")
                setattr(block, conv_name, fuse_conv_bn_eval(getattr(block, conv_name), norm))
                setattr(block, norm_name, nn.Identity())
    return model
