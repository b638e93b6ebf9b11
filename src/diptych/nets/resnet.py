"""ResNet generator (pix2pix/CycleGAN's resnet_9blocks and resnet_6blocks; pix2pixHD's global generator), and its
generator family (--arch resnet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from ..config import GeneratorConfig, fraction, opt, within
from .geometry import Geometry
from .layers import ReflectionPad2d, conv_bias, crop_padded, make_norm, pad_to_multiple

RESNET_DOWNSAMPLINGS = 2  # resnet_9blocks / resnet_6blocks, as the reference


def bottleneck_geometry(n_down: int) -> Geometry:
    """The geometry of a network downsampling `n_down` times: inputs reflect-padded to a multiple of the stride, and
    to at least two pixels at the bottleneck (its reflection pads and instance norms need them)."""
    return Geometry(stride=2**n_down, multiple=2**n_down, min_side=2 * 2**n_down)


def conv_norm_relu(cin: int, cout: int, kernel: int, stride: int, norm: str) -> nn.Sequential:
    """A 7x7 reflect-padded conv (stride 1) or a zero-padded kxk conv, then norm and ReLU."""
    layers: list[nn.Module] = []
    if kernel == 7:
        layers += [ReflectionPad2d(3), nn.Conv2d(cin, cout, 7, bias=conv_bias(norm))]
    else:
        layers += [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=conv_bias(norm))]
    return nn.Sequential(*layers, make_norm(norm, cout), nn.ReLU(inplace=True))


def up_norm_relu(cin: int, cout: int, norm: str) -> nn.Sequential:
    """A 2x upsampling 3x3 transposed conv, then norm and ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=conv_bias(norm)),
        make_norm(norm, cout),
        nn.ReLU(inplace=True),
    )


def output_head(cin: int, cout: int) -> nn.Sequential:
    """Reflect pad 3, 7x7 conv with bias, tanh."""
    return nn.Sequential(ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), nn.Tanh())


def run_blocks(blocks: nn.Sequential, h: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    """Residual blocks, recomputed in backward instead of stored when checkpointing (training only)."""
    if checkpointing and torch.is_grad_enabled():
        return checkpoint_sequential(blocks, len(blocks), h, use_reentrant=False)
    return blocks(h)


class ResidualBlock(nn.Module):
    """x + (reflect-pad, 3x3 conv, norm, ReLU [, dropout], reflect-pad, 3x3 conv, norm)(x)."""

    def __init__(self, channels: int, norm: str, dropout: float = 0.0) -> None:
        super().__init__()
        bias = conv_bias(norm)
        # Dropout shares the ReLU's slot, so parameter names do not depend on it (the reference's shift by one).
        act: nn.Module = nn.ReLU(inplace=True)
        if dropout > 0:
            act = nn.Sequential(act, nn.Dropout(dropout))
        self.body = nn.Sequential(
            ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
            act,
            ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """7x7 front, `n_down` stride-2 convs, residual blocks, as many transposed convs, 7x7 head; any input size.

    resnet_9blocks / resnet_6blocks are n_down 2 with 9 / 6 blocks; pix2pixHD's global generator is n_down 4
    (its `features` feed the local enhancers). Inputs are reflect-padded to a multiple of the stride and to at
    least two pixels at the bottleneck (its reflection pads and instance norms need them), then cropped back.
    Every conv-norm pair sits in an nn.Sequential, so inference.py folds batch norms without a FOLDABLE list.
    """

    CPU_CHANNELS_LAST = False  # its reflection pads and instance norms run slower channels-last on oneDNN

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        n_down: int = 2,
        n_blocks: int = 9,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.front = conv_norm_relu(in_channels, ngf, 7, 1, norm)
        self.down = nn.Sequential(*(conv_norm_relu(ngf * 2**i, ngf * 2 ** (i + 1), 3, 2, norm) for i in range(n_down)))
        width = ngf * 2**n_down
        self.blocks = nn.Sequential(*(ResidualBlock(width, norm, dropout) for _ in range(n_blocks)))
        self.up = nn.Sequential(
            *(up_norm_relu(ngf * 2 ** (n_down - i), ngf * 2 ** (n_down - i - 1), norm) for i in range(n_down))
        )
        self.head = output_head(ngf, out_channels)
        self.geometry = bottleneck_geometry(n_down)
        self.checkpointing = False  # recompute residual blocks in backward to save activation memory

    def features(self, x: torch.Tensor, checkpointing: bool = False) -> torch.Tensor:
        """Everything before the output head, on an input already padded to the stride."""
        return self.up(run_blocks(self.blocks, self.down(self.front(x)), checkpointing))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, size = pad_to_multiple(x, self.geometry.multiple, minimum=self.geometry.min_side)
        return crop_padded(self.head(self.features(padded, self.checkpointing)), padded.shape, size)


@dataclass(slots=True)
class ResnetConfig(GeneratorConfig):
    """--arch resnet: pix2pix/CycleGAN's resnet_Nblocks."""

    help: ClassVar[str] = "pix2pix/CycleGAN's resnet_Nblocks (2 downsamplings, residual blocks)"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "resnet_9blocks": {"n_blocks": 9},
        "resnet_6blocks": {"n_blocks": 6},
    }

    arch: str = "resnet"
    dropout: float = opt(0.5, "dropout in every residual block; 0 disables", bounds=fraction())
    n_blocks: int = opt(9, "residual blocks (resnet_9blocks = 9, resnet_6blocks = 6)", bounds=within(1, 64))

    def build(self) -> nn.Module:
        """The ResNet generator."""
        return ResnetGenerator(
            self.in_channels, self.out_channels, self.ngf, RESNET_DOWNSAMPLINGS, self.n_blocks, self.norm, self.dropout
        )

    def geometry(self) -> Geometry:
        """Stride 4."""
        return bottleneck_geometry(RESNET_DOWNSAMPLINGS)
