"""pix2pixHD's multi-scale discriminator: PatchGANs on an image pyramid, each returning its features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .patchgan import PatchDiscriminator


class MultiscaleDiscriminator(nn.Module):
    """`num_d` PatchDiscriminators; discriminator k sees the input average-pooled k times by 2."""

    def __init__(
        self,
        in_channels: int,
        num_d: int = 2,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if num_d < 1:
            raise ValueError("num_d must be >= 1")
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_channels, ndf, n_layers, norm, spectral_norm) for _ in range(num_d)
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale (finest first): every block's activation, then the patch logits."""
        outputs = []
        for k, disc in enumerate(self.scales):
            if k:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(disc.forward_features(x))
        return outputs
