"""What the super-resolution generators share: diptych's [-1, 1] contract around weights that may expect [0, 1],
padding to the network's multiple, the crop to `scale` x the input, and the interpolated global skip."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import NORMS, GeneratorConfig, opt, within
from ..errors import ConfigError
from .geometry import Geometry
from .layers import crop_padded, pad_to_multiple

# The value range a network's weights work in: "signed" is diptych's [-1, 1]; "unit" is [0, 1], the range of
# Real-ESRGAN's and BasicSR's published weights (mapped to and from [-1, 1] around the network).
PIXEL_RANGES = ("signed", "unit")
ESRGAN_INIT_SCALE = 0.1  # the conv weight scale MSRResNet and RRDBNet start from (BasicSR's, after ESRGAN)
# The global skip setting: auto adds the upscaled input when the input and output channel counts match.
SKIPS = {"auto": None, "on": True, "off": False}


class SuperResolutionNet(nn.Module, ABC):
    """An upscaling generator: [-1, 1] tensors of any size in, `geometry.scale` times larger [-1, 1] tensors out."""

    def __init__(self, geometry: Geometry, pixel_range: str) -> None:
        super().__init__()
        if pixel_range not in PIXEL_RANGES:
            raise ValueError(f"unknown pixel_range {pixel_range!r} (choose from {', '.join(PIXEL_RANGES)})")
        self.geometry = geometry
        self.pixel_range = pixel_range
        self.checkpointing = False  # recompute residual blocks in backward to save activation memory

    @abstractmethod
    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        """The network proper, on an input padded to the geometry and in the weights' value range."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, size = pad_to_multiple(x, self.geometry.multiple, minimum=self.geometry.min_side)
        if self.pixel_range == "unit":
            return crop_padded(self.upscale((padded + 1) / 2) * 2 - 1, padded.shape, size, self.geometry.scale)
        return crop_padded(self.upscale(padded), padded.shape, size, self.geometry.scale)


def resolve_skip(skip: bool | None, in_channels: int, out_channels: int) -> bool:
    """Whether a network adds its upsampled input to its output: by default when the channel counts match, and
    only then (the input is the output's base image)."""
    if skip is None:
        return in_channels == out_channels
    if skip and in_channels != out_channels:
        raise ValueError(f"a global skip needs as many input as output channels ({in_channels} != {out_channels})")
    return skip


def upsampled_input(x: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    """The input enlarged `factor` times by nearest or bilinear interpolation (the base image of a global skip)."""
    if mode == "nearest":
        return F.interpolate(x, scale_factor=factor, mode="nearest")
    return F.interpolate(x, scale_factor=factor, mode=mode, align_corners=False)


def scaled_kaiming_init(module: nn.Module, scale: float) -> None:
    """Kaiming-normal conv weights times `scale`, zero biases: ESRGAN's "smaller initialisation" (0.1), which keeps
    a deep stack of residual branches near the identity at the start of training."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            with torch.no_grad():
                m.weight.mul_(scale)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """A zero-padded 3x3 convolution with bias (every convolution of the SR networks)."""
    return nn.Conv2d(cin, cout, 3, padding=1)


# How far a cut in the input still changes the outputs of Real-ESRGAN's published RRDBNets, in pixels of the
# network's body: a tile's outputs 32 px from its cut differ from the whole image's by 0.37 8-bit levels on average
# (x4plus, 23 blocks; 0.15 for the 6-block anime model), by 0.9 at 16 px and by 0.01 at 64 px (docs/translation.md).
# Their receptive fields (350 convolutions for x4plus) are far wider than this, so it caps a family's context.
EFFECTIVE_REACH = 32


def sr_geometry(scale: int, radius: int, unshuffle: int = 1) -> Geometry:
    """An upscaler's geometry: output `scale` x the input; sides padded to the pixel unshuffle's factor, if any;
    its context: the receptive field's `radius` in body pixels, at most EFFECTIVE_REACH, in input pixels."""
    context = min(radius, EFFECTIVE_REACH) * unshuffle
    return Geometry(stride=unshuffle, multiple=unshuffle, min_side=unshuffle, scale=scale, context=context)


@dataclass(slots=True)
class SRConfig(GeneratorConfig):
    """The fields the super-resolution families share (each family is a subclass registered in nets.families):
    an output scale among the family's `scales`, a width, the weights' value range, and no normalisation."""

    scales: ClassVar[tuple[int, ...]] = ()
    initialises_itself: ClassVar[bool] = True

    ngf: int = opt(64, "features in the network's body", bounds=within(4, 256))
    norm: str = opt(
        "none", "normalisation layer in the generator (the upscalers have none)", choices=NORMS, flag="g-norm"
    )
    scale: int = opt(
        4, "output size / input size: msrresnet and compact 2, 3, 4 or 8; rrdbnet 1, 2 or 4", bounds=within(1, 8)
    )
    pixel_range: str = opt(
        "signed",
        "value range the weights work in: signed = [-1, 1], unit = [0, 1] (Real-ESRGAN's and BasicSR's weights)",
        choices=PIXEL_RANGES,
    )

    def check(self) -> None:
        """A scale the family supports, and no normalisation."""
        if self.scale not in self.scales:
            raise ConfigError(
                f"--scale {self.scale}: the {self.arch} generator upscales by "
                f"{', '.join(map(str, self.scales[:-1]))} or {self.scales[-1]}; choose one of those"
            )
        if self.norm != "none":
            raise ConfigError(
                f"--g-norm {self.norm}: the {self.arch} generator has no normalisation layers; use --g-norm none"
            )


def check_skip(config: Any) -> None:
    """ConfigError for a config's `skip` field `on` with channel counts that differ (once both are known)."""
    cin, cout = config.in_channels, config.out_channels
    if config.skip == "on" and cin and cout and cin != cout:
        raise ConfigError(
            f"--skip on: a global skip adds the upscaled input to the output, which needs as many input as output "
            f"channels ({cin} != {cout}); use --skip auto or off"
        )
