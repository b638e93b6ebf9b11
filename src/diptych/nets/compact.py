"""CompactSRNet, in the spirit of Real-ESRGAN's SRVGGNetCompact: a plain conv body at the input's resolution, one
pixel shuffle at the end and a nearest-neighbour global skip; fast on CPUs and large images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import opt, within
from ..errors import ConfigError
from .geometry import Geometry
from .sr import (
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

ACTIVATIONS = ("prelu", "relu", "leakyrelu")
COMPACT_SCALES = (2, 3, 4, 8)


def activation(kind: str, channels: int) -> nn.Module:
    """PReLU with one slope per channel, ReLU, or leaky ReLU (slope 0.1)."""
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leakyrelu":
        return nn.LeakyReLU(0.1, inplace=True)
    raise ValueError(f"unknown activation {kind!r} (choose from {', '.join(ACTIVATIONS)})")


def compact_geometry(scale: int, n_convs: int, upscale: int) -> Geometry:
    """Output `scale` x the input; the receptive radius: the first conv, `n_convs`, the last conv, and one more pixel
    for the final bicubic resize when the pixel shuffle is larger than the scale."""
    return sr_geometry(scale, n_convs + 2 + int(upscale > scale))


class CompactSRNet(SuperResolutionNet):
    """conv + act, `n_convs` x (conv + act), conv to out_channels * upscale^2, pixel shuffle by `upscale`, plus the
    nearest-upscaled input; when `scale` < `upscale`, a final bicubic resize to `scale` x the input (how the
    published x2/x3 video models are made from the x4 one). 621,424 parameters at x4 with the defaults on RGB."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale: int = 4,
        ngf: int = 64,
        n_convs: int = 16,
        act: str = "prelu",
        upscale: int | None = None,
        skip: bool | None = None,
        pixel_range: str = "signed",
    ) -> None:
        upscale = upscale or scale
        if scale not in COMPACT_SCALES or upscale not in COMPACT_SCALES or upscale < scale:
            raise ValueError(
                f"CompactSRNet upscales by {', '.join(map(str, COMPACT_SCALES))} with a pixel shuffle at least as "
                f"large, not scale {scale} with upscale {upscale}"
            )
        super().__init__(compact_geometry(scale, n_convs, upscale), pixel_range)
        self.upscale_factor = upscale
        self.skip = resolve_skip(skip, in_channels, out_channels)
        layers: list[nn.Module] = [conv3x3(in_channels, ngf), activation(act, ngf)]
        for _ in range(n_convs):
            layers += [conv3x3(ngf, ngf), activation(act, ngf)]
        layers.append(conv3x3(ngf, out_channels * upscale * upscale))
        self.body = nn.Sequential(*layers)
        # PyTorch's default initialisation shrinks the signal about 5x in variance per conv + PReLU: through 18
        # layers the first layer's gradient was ~1e-10, under Adam's epsilon, and the body never learnt (the output
        # stayed the nearest-neighbour skip). Kaiming-normal keeps the variance; the last conv starts at a tenth
        # so the untrained network is close to its skip.
        scaled_kaiming_init(self.body, 1.0)
        with torch.no_grad():
            self.body[-1].weight.mul_(0.1)

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        out = F.pixel_shuffle(self.body(x), self.upscale_factor)
        if self.skip:
            out = out + upsampled_input(x, self.upscale_factor, "nearest")
        if self.upscale_factor == self.geometry.scale:
            return out
        size = (x.shape[-2] * self.geometry.scale, x.shape[-1] * self.geometry.scale)
        return F.interpolate(out, size=size, mode="bicubic", align_corners=False)


@dataclass(slots=True)
class CompactConfig(SRConfig):
    """--arch compact: a plain conv body and one pixel shuffle (SRVGGNetCompact-style), fast on CPUs."""

    help: ClassVar[str] = "compact upscaler for CPUs and large images: plain conv body, one pixel shuffle, nearest skip"
    presets: ClassVar[dict[str, dict[str, Any]]] = {f"compact_x{s}": {"scale": s} for s in COMPACT_SCALES}
    scales: ClassVar[tuple[int, ...]] = COMPACT_SCALES

    arch: str = "compact"
    n_convs: int = opt(16, "convolutions in the body (after the first)", bounds=within(1, 64))
    act: str = opt("prelu", "activation after each convolution", choices=ACTIVATIONS)
    upscale: int = opt(
        0,
        "pixel-shuffle factor, resized to --scale by a final bicubic resize when larger (Real-ESRGAN's x2/x3 video "
        "models shuffle by 4); 0 = the scale",
        bounds=within(0, 8),
    )
    skip: str = opt(
        "auto", "add the upscaled input to the output (auto: when the channel counts match)", choices=tuple(SKIPS)
    )

    def check(self) -> None:
        """A supported scale, no normalisation, a skip the channel counts allow, and a pixel shuffle that is a
        supported scale at least as large."""
        SRConfig.check(self)
        check_skip(self)
        if self.upscale and (self.upscale not in self.scales or self.upscale < self.scale):
            raise ConfigError(
                f"--upscale {self.upscale}: the pixel shuffle must be one of {', '.join(map(str, self.scales))} and "
                f"at least --scale {self.scale}; use 0 (the scale)"
            )

    def build(self) -> nn.Module:
        """The compact network."""
        self.check()
        return CompactSRNet(
            self.in_channels,
            self.out_channels,
            self.scale,
            self.ngf,
            self.n_convs,
            self.act,
            upscale=self.upscale or None,
            skip=SKIPS[self.skip],
            pixel_range=self.pixel_range,
        )

    def geometry(self) -> Geometry:
        """No downsampling; output `scale` x the input."""
        return compact_geometry(self.scale, self.n_convs, self.upscale or self.scale)
