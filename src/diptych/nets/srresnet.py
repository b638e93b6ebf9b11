"""MSRResNet: SRResNet without batch norm (BasicSR's modified SRResNet): residual blocks, pixel-shuffle upsampling
and a bilinear global skip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import opt, within
from .geometry import Geometry
from .resnet import run_blocks
from .sr import (
    ESRGAN_INIT_SCALE,
    SKIPS,
    SRConfig,
    SuperResolutionNet,
    check_skip,
    conv3x3,
    resolve_skip,
    scaled_kaiming_init,
    sr_geometry,
    upsampled_input,
)

MSRRESNET_SCALES = (2, 3, 4, 8)
LEAKY_SLOPE = 0.1


def shuffle_factors(scale: int) -> list[int]:
    """Pixel-shuffle stages of an output scale: one x3 stage, or x2 stages (x4 = two, x8 = three)."""
    if scale not in MSRRESNET_SCALES:
        raise ValueError(f"MSRResNet upscales by {', '.join(map(str, MSRRESNET_SCALES))}, not {scale}")
    return [3] if scale == 3 else [2] * (scale.bit_length() - 1)


def msrresnet_geometry(scale: int, n_blocks: int) -> Geometry:
    """Output `scale` x the input; the receptive radius: the first conv, two per block, and 2 more for the upsampling
    stages and the last two convs (each at a higher resolution)."""
    return sr_geometry(scale, 2 * n_blocks + 3)


class ResidualBlockNoNorm(nn.Module):
    """x + res_scale * conv(relu(conv(x))): EDSR's block (res_scale 0.1 for wide networks, 1 in MSRResNet)."""

    def __init__(self, channels: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


class UpsampleStage(nn.Module):
    """conv to factor^2 x the channels, pixel shuffle by factor, leaky ReLU."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels * factor * factor)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(F.pixel_shuffle(self.conv(x), self.factor), LEAKY_SLOPE)


class MSRResNet(SuperResolutionNet):
    """conv, `n_blocks` residual blocks without norm, pixel-shuffle stages, conv, conv; plus the bilinearly
    upscaled input when the channel counts match. 1,517,571 parameters at x4 with the defaults on RGB."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale: int = 4,
        ngf: int = 64,
        n_blocks: int = 16,
        res_scale: float = 1.0,
        skip: bool | None = None,
        pixel_range: str = "signed",
    ) -> None:
        factors = shuffle_factors(scale)
        super().__init__(msrresnet_geometry(scale, n_blocks), pixel_range)
        self.skip = resolve_skip(skip, in_channels, out_channels)
        self.conv_first = conv3x3(in_channels, ngf)
        self.body = nn.Sequential(*(ResidualBlockNoNorm(ngf, res_scale) for _ in range(n_blocks)))
        self.up = nn.Sequential(*(UpsampleStage(ngf, f) for f in factors))
        self.conv_hr = conv3x3(ngf, ngf)
        self.conv_last = conv3x3(ngf, out_channels)
        scaled_kaiming_init(self, ESRGAN_INIT_SCALE)

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.leaky_relu(self.conv_first(x), LEAKY_SLOPE)
        feat = self.up(run_blocks(self.body, feat, self.checkpointing))
        out = self.conv_last(F.leaky_relu(self.conv_hr(feat), LEAKY_SLOPE))
        return out + upsampled_input(x, self.geometry.scale, "bilinear") if self.skip else out


@dataclass(slots=True)
class MSRResNetConfig(SRConfig):
    """--arch msrresnet: SRResNet without batch norm (BasicSR's MSRResNet)."""

    help: ClassVar[str] = "SRResNet without batch norm: residual blocks, pixel-shuffle upsampling, bilinear skip"
    presets: ClassVar[dict[str, dict[str, Any]]] = {f"msrresnet_x{s}": {"scale": s} for s in MSRRESNET_SCALES}
    scales: ClassVar[tuple[int, ...]] = MSRRESNET_SCALES

    arch: str = "msrresnet"
    n_blocks: int = opt(16, "residual blocks", bounds=within(1, 64))
    skip: str = opt(
        "auto", "add the upscaled input to the output (auto: when the channel counts match)", choices=tuple(SKIPS)
    )

    def check(self) -> None:
        """A supported scale, no normalisation, a skip the channel counts allow."""
        SRConfig.check(self)
        check_skip(self)

    def build(self) -> nn.Module:
        """The MSRResNet."""
        self.check()
        return MSRResNet(
            self.in_channels,
            self.out_channels,
            self.scale,
            self.ngf,
            self.n_blocks,
            skip=SKIPS[self.skip],
            pixel_range=self.pixel_range,
        )

    def geometry(self) -> Geometry:
        """No downsampling; output `scale` x the input."""
        return msrresnet_geometry(self.scale, self.n_blocks)
