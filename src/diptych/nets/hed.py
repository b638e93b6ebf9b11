"""HED (Holistically-Nested Edge Detection, Xie & Tu 2015): VGG16 stages with fused side outputs -> soft edges."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from .vgg import vgg_features

# Stage k of HED is features[STAGES[k-1]:STAGES[k]] of torchvision's VGG16 layout (each later stage starts with a pool).
STAGES = (0, 4, 9, 16, 23, 30)
STAGE_CHANNELS = (64, 128, 256, 512, 512)
# The Caffe model's input: BGR in 0..255 minus the ImageNet/BSDS channel means (B, G, R).
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
_ORDINALS = ("One", "Two", "Thr", "Fou", "Fiv")


class HEDNetwork(nn.Module):
    """Maps an RGB batch in [0, 1] to an edge probability map in [0, 1] of the same size (B x 1 x H x W)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg_features("vgg16")
        self.side = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in STAGE_CHANNELS)
        self.fuse = nn.Conv2d(len(STAGE_CHANNELS), 1, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(CAFFE_BGR_MEAN, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        x = rgb.flip(1) * 255.0 - mean
        size = rgb.shape[-2:]
        sides = []
        for k, side in enumerate(self.side):
            for layer in self.features[STAGES[k] : STAGES[k + 1]]:
                x = layer(x)
            sides.append(F.interpolate(side(x), size=size, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))


def hed_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept HED weights in this module's names or in the layout of the widely used PyTorch port of the Caffe model
    (`netVggOne.0.weight` / `moduleVggOne.0.weight`, `netScoreOne.*`, `netCombine.0.*`); return this module's names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = re.fullmatch(r"(?:net|module)(Vgg|Score)(One|Two|Thr|Fou|Fiv)\.(?:(\d+)\.)?(weight|bias)", key)
        combine = re.fullmatch(r"(?:net|module)Combine\.0\.(weight|bias)", key)
        if match:
            kind, ordinal, index, param = match.groups()
            stage = _ORDINALS.index(ordinal)
            if kind == "Score":
                out[f"side.{stage}.{param}"] = value
            else:  # the port's stage k > 1 starts with its pool at index 0, as our slice does
                out[f"features.{STAGES[stage] + int(index or 0)}.{param}"] = value
        elif combine:
            out[f"fuse.{combine.group(1)}"] = value
        else:
            out[key] = value
    return out
