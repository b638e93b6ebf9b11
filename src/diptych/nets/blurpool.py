"""Anti-aliased downsampling (Zhang 2019, "Making convolutional networks shift-invariant again"): blur, then subsample."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BINOMIAL_3 = (1.0, 2.0, 1.0)


class BlurDownsample(nn.Module):
    """Reflect-pad by 2, convolve each channel with the normalised 3x3 binomial filter, keep every second pixel.

    The 2-pixel padding (rather than the 1 a 3x3 filter needs) is what the shift-tolerant LPIPS networks use
    (Ghildyal & Liu 2022); the filter is a buffer named `filt`, so their weight files load into it as they are.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor(BINOMIAL_3)
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("filt", (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt.to(x.dtype), stride=2, groups=x.shape[1])
