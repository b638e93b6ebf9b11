"""RRDBNet, ESRGAN's generator: residual-in-residual dense blocks, then nearest-neighbour upsampling with convs;
x2 and x1 models see a pixel-unshuffled input (as Real-ESRGAN's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import opt, within
from .geometry import Geometry
from .resnet import run_blocks
from .sr import ESRGAN_INIT_SCALE, SRConfig, SuperResolutionNet, conv3x3, scaled_kaiming_init, sr_geometry

RRDB_SCALES = (1, 2, 4)
LEAKY_SLOPE = 0.2
RES_SCALE = 0.2  # ESRGAN's residual scaling, in every dense block and around every RRDB
DENSE_CONVS = 5


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and all earlier outputs; x + 0.2 * the last one's output."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        widths = [channels + i * growth for i in range(DENSE_CONVS)]
        self.convs = nn.ModuleList(
            conv3x3(cin, growth if i < DENSE_CONVS - 1 else channels) for i, cin in enumerate(widths)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), LEAKY_SLOPE))
        return x + RES_SCALE * self.convs[-1](torch.cat(feats, 1))


class RRDB(nn.Module):
    """Three residual dense blocks inside one more residual connection scaled by 0.2."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.dense = nn.Sequential(*(ResidualDenseBlock(channels, growth) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RES_SCALE * self.dense(x)


def rrdb_geometry(scale: int, n_blocks: int) -> Geometry:
    """x2 and x1 fold 2x2 / 4x4 pixels into channels (so the body always upsamples x4): sides are padded to that.
    The receptive radius: 15 convs per block, the first and body convs, and 4 more at the higher resolutions."""
    return sr_geometry(scale, DENSE_CONVS * 3 * n_blocks + 4, unshuffle=4 // scale)


class RRDBNet(SuperResolutionNet):
    """conv, `n_blocks` RRDBs + conv (a long skip), two (nearest x2, conv) stages, conv, conv.
    16,697,987 parameters at x4 with the defaults (23 blocks, 64 features, growth 32) on RGB."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale: int = 4,
        ngf: int = 64,
        n_blocks: int = 23,
        growth: int = 32,
        pixel_range: str = "signed",
    ) -> None:
        if scale not in RRDB_SCALES:
            raise ValueError(f"RRDBNet upscales by {', '.join(map(str, RRDB_SCALES))}, not {scale}")
        super().__init__(rrdb_geometry(scale, n_blocks), pixel_range)
        self.unshuffle = unshuffle = self.geometry.multiple
        # (registration order is the order of the published graphs' convolutions; convert-ncnn relies on it)
        self.conv_first = conv3x3(in_channels * unshuffle * unshuffle, ngf)
        self.body = nn.Sequential(*(RRDB(ngf, growth) for _ in range(n_blocks)))
        self.conv_body = conv3x3(ngf, ngf)
        self.conv_up1 = conv3x3(ngf, ngf)
        self.conv_up2 = conv3x3(ngf, ngf)
        self.conv_hr = conv3x3(ngf, ngf)
        self.conv_last = conv3x3(ngf, out_channels)
        scaled_kaiming_init(self, ESRGAN_INIT_SCALE)

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(run_blocks(self.body, feat, self.checkpointing))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), LEAKY_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LEAKY_SLOPE))


@dataclass(slots=True)
class RRDBNetConfig(SRConfig):
    """--arch rrdbnet: ESRGAN's generator (Real-ESRGAN's RRDBNet)."""

    help: ClassVar[str] = "ESRGAN's RRDBNet: residual-in-residual dense blocks, nearest-neighbour upsampling"
    presets: ClassVar[dict[str, dict[str, Any]]] = {f"rrdbnet_x{s}": {"scale": s} for s in RRDB_SCALES}
    scales: ClassVar[tuple[int, ...]] = RRDB_SCALES

    arch: str = "rrdbnet"
    n_blocks: int = opt(23, "residual-in-residual dense blocks", bounds=within(1, 64))
    growth: int = opt(32, "channels each dense convolution adds", bounds=within(4, 128))

    def build(self) -> nn.Module:
        """The RRDBNet."""
        self.check()
        return RRDBNet(
            self.in_channels, self.out_channels, self.scale, self.ngf, self.n_blocks, self.growth, self.pixel_range
        )

    def geometry(self) -> Geometry:
        """Output `scale` x the input; x2 and x1 pad sides to 2 and 4."""
        return rrdb_geometry(self.scale, self.n_blocks)
