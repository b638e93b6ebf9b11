"""Conditional PatchGAN discriminator (pix2pix) with a chosen receptive field."""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv_bias, make_norm, spectral_normalise


def receptive_field(n_layers: int) -> int:
    """Receptive field in pixels of PatchDiscriminator(n_layers): 1, 16, 34, 70, 142, 286, ..."""
    if n_layers == 0:
        return 1
    rf = 1
    # Two stride-1 4x4 convs at the end, n_layers stride-2 4x4 convs before them (walked backwards).
    for stride in [1, 1] + [2] * n_layers:
        rf = rf * stride + (4 - stride)
    return rf


class PatchDiscriminator(nn.Module):
    """Scores overlapping patches as real or fake; n_layers = 0 gives the 1x1 pixel discriminator; spectral_norm:
    every convolution's weight divided by its largest singular value (Miyato et al. 2018)."""

    def __init__(
        self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch", spectral_norm: bool = False
    ) -> None:
        super().__init__()
        self.n_layers = n_layers
        blocks: list[nn.Module] = []
        if n_layers == 0:
            blocks.append(_ConvNormAct(in_channels, ndf, 1, 1, 0, "none"))
            blocks.append(_ConvNormAct(ndf, ndf * 2, 1, 1, 0, norm))
            head = nn.Conv2d(ndf * 2, 1, 1, stride=1, padding=0)
        else:
            blocks.append(_ConvNormAct(in_channels, ndf, 4, 2, 1, "none"))
            mult = 1
            for n in range(1, n_layers):
                prev, mult = mult, min(2**n, 8)
                blocks.append(_ConvNormAct(ndf * prev, ndf * mult, 4, 2, 1, norm))
            prev, mult = mult, min(2**n_layers, 8)
            blocks.append(_ConvNormAct(ndf * prev, ndf * mult, 4, 1, 1, norm))
            head = nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        if spectral_norm:
            spectral_normalise(self)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's activation followed by the patch logits (for feature-matching losses)."""
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        feats.append(self.head(x))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class _ConvNormAct(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int, pad: int, norm: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=pad, bias=conv_bias(norm))
        self.norm = make_norm(norm, out_ch)
        self.act = nn.LeakyReLU(0.2, inplace=True)
