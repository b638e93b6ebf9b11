"""pix2pixHD coarse-to-fine generator: a global ResNet generator wrapped by local enhancers at 2x each, and its
generator family (--arch hd)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MAX_DOWNSAMPLINGS, GeneratorConfig, opt, within
from ..errors import ConfigError
from .geometry import Geometry
from .layers import crop_padded, pad_to_multiple
from .resnet import (
    ResidualBlock,
    ResnetGenerator,
    bottleneck_geometry,
    conv_norm_relu,
    output_head,
    run_blocks,
    up_norm_relu,
)


class LocalEnhancer(nn.Module):
    """One 2x refinement stage: its own front/downsampling on the finer input, plus the coarser stage's features."""

    def __init__(self, in_channels: int, width: int, n_blocks: int, norm: str) -> None:
        super().__init__()
        self.down = nn.Sequential(
            conv_norm_relu(in_channels, width, 7, 1, norm), conv_norm_relu(width, width * 2, 3, 2, norm)
        )
        self.blocks = nn.Sequential(*(ResidualBlock(width * 2, norm) for _ in range(n_blocks)))
        self.up = up_norm_relu(width * 2, width, norm)

    def forward(self, x: torch.Tensor, coarse_features: torch.Tensor, checkpointing: bool = False) -> torch.Tensor:
        return self.up(run_blocks(self.blocks, self.down(x) + coarse_features, checkpointing))


class HDGenerator(nn.Module):
    """Coarse-to-fine generator: a global ResnetGenerator at 1/2**n_local resolution and n_local LocalEnhancers.

    With n_local = 0 it is the global generator alone (stage 1 of pix2pixHD's schedule, trained at half
    resolution); `global_generator` keeps the same parameter names either way, so stage-1 weights load
    into a stage-2 model with `load_global`. Inputs of any size are reflect-padded to the stride.
    """

    CPU_CHANNELS_LAST = False  # its reflection pads and instance norms run slower channels-last on oneDNN

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 32,
        n_local: int = 1,
        n_down_global: int = 4,
        n_blocks_global: int = 9,
        n_blocks_local: int = 3,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        self.n_local = n_local
        self.global_generator = ResnetGenerator(
            in_channels, out_channels, ngf * 2**n_local, n_down_global, n_blocks_global, norm
        )
        self.local = nn.ModuleList(
            LocalEnhancer(in_channels, ngf * 2 ** (n_local - k - 1), n_blocks_local, norm) for k in range(n_local)
        )
        self.head = output_head(ngf, out_channels) if n_local else nn.Identity()
        self.geometry = bottleneck_geometry(n_down_global + n_local)
        self.checkpointing = False  # recompute residual blocks in backward to save activation memory

    def load_global(self, state: dict[str, torch.Tensor]) -> None:
        """Load a stage-1 model's global generator (its output head is unused once enhancers exist)."""
        prefix = "global_generator."
        own = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if self.n_local:
            own = {k: v for k, v in own.items() if not k.startswith("head.")}
        try:
            missing, unexpected = self.global_generator.load_state_dict(own, strict=False)
        except RuntimeError as exc:  # shape mismatches: a different width or depth
            raise ValueError(f"global generator weights do not fit ({str(exc).splitlines()[1].strip()})") from None
        missing = [k for k in missing if not (self.n_local and k.startswith("head."))]
        if missing or unexpected:
            raise ValueError(
                f"global generator weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, size = pad_to_multiple(x, self.geometry.multiple, minimum=self.geometry.min_side)
        pyramid = [padded]
        for _ in range(self.n_local):
            pyramid.append(F.avg_pool2d(pyramid[-1], 3, stride=2, padding=1, count_include_pad=False))
        features = self.global_generator.features(pyramid[-1], self.checkpointing)
        if not self.n_local:
            return crop_padded(self.global_generator.head(features), padded.shape, size)
        for k, enhancer in enumerate(self.local):
            features = enhancer(pyramid[self.n_local - 1 - k], features, self.checkpointing)
        return crop_padded(self.head(features), padded.shape, size)


@dataclass(slots=True)
class HDConfig(GeneratorConfig):
    """--arch hd: pix2pixHD's global generator and local enhancers."""

    help: ClassVar[str] = "pix2pixHD's coarse-to-fine generator (a global ResNet generator + local enhancers)"

    arch: str = "hd"
    n_local: int = opt(
        1,
        "local enhancers around the global generator (0 = global generator alone, stage 1)",
        bounds=within(0, MAX_DOWNSAMPLINGS - 1),
    )
    n_down_global: int = opt(4, "stride-2 downsamplings in the global generator", bounds=within(1, MAX_DOWNSAMPLINGS))
    n_blocks_global: int = opt(9, "residual blocks in the global generator", bounds=within(1, 64))
    n_blocks_local: int = opt(3, "residual blocks in each local enhancer", bounds=within(1, 64))

    def check(self) -> None:
        """The total downsampling stays within MAX_DOWNSAMPLINGS."""
        if self.n_down_global + self.n_local > MAX_DOWNSAMPLINGS:
            raise ConfigError(
                f"--n-down-global {self.n_down_global} + --n-local {self.n_local} downsample by "
                f"2**{self.n_down_global + self.n_local}; at most 2**{MAX_DOWNSAMPLINGS} is supported"
            )

    def build(self) -> nn.Module:
        """The coarse-to-fine generator."""
        return HDGenerator(
            self.in_channels,
            self.out_channels,
            self.ngf,
            self.n_local,
            self.n_down_global,
            self.n_blocks_global,
            self.n_blocks_local,
            self.norm,
        )

    def geometry(self) -> Geometry:
        """Stride 2**(n_down_global + n_local)."""
        return bottleneck_geometry(self.n_down_global + self.n_local)

    def stride_hint(self, side: int) -> str:
        """Fewer global downsamplings."""
        return "fewer --n-down-global"
