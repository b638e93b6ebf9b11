"""Networks: nn.Modules only (no optimisers, no I/O), built from typed configs."""

from __future__ import annotations

from torch import nn

from ..config import DiscriminatorConfig, GeneratorConfig
from .hd import HDGenerator
from .layers import init_weights
from .multiscale import MultiscaleDiscriminator
from .patchgan import PatchDiscriminator, receptive_field
from .resnet import ResnetGenerator
from .unet import UNetGenerator

__all__ = [
    "HDGenerator",
    "MultiscaleDiscriminator",
    "PatchDiscriminator",
    "ResnetGenerator",
    "UNetGenerator",
    "create_discriminator",
    "create_generator",
    "generator_stride",
    "init_weights",
    "receptive_field",
]

RESNET_DOWNSAMPLINGS = 2  # resnet_9blocks / resnet_6blocks, as the reference


def create_generator(cfg: GeneratorConfig) -> nn.Module:
    """Build the generator a config describes (channels must already be filled in)."""
    if cfg.in_channels < 1 or cfg.out_channels < 1:
        raise ValueError("generator channels are not set; they come from the data")
    if cfg.arch == "unet":
        return UNetGenerator(cfg.in_channels, cfg.out_channels, cfg.depth, cfg.ngf, cfg.norm, cfg.dropout, cfg.upsample)
    if cfg.arch == "resnet":
        return ResnetGenerator(
            cfg.in_channels, cfg.out_channels, cfg.ngf, RESNET_DOWNSAMPLINGS, cfg.n_blocks, cfg.norm, cfg.dropout
        )
    if cfg.arch == "hd":
        return HDGenerator(
            cfg.in_channels,
            cfg.out_channels,
            cfg.ngf,
            cfg.n_local,
            cfg.n_down_global,
            cfg.n_blocks_global,
            cfg.n_blocks_local,
            cfg.norm,
        )
    raise ValueError(f"unknown generator arch {cfg.arch!r}")


def generator_stride(cfg: GeneratorConfig) -> int:
    """The generator's total downsampling."""
    if cfg.arch == "resnet":
        return 2**RESNET_DOWNSAMPLINGS
    return 2**cfg.depth if cfg.arch == "unet" else 2 ** (cfg.n_down_global + cfg.n_local)


def create_discriminator(cfg: DiscriminatorConfig, in_channels: int) -> nn.Module:
    """Build the (conditional) discriminator; in_channels = input + output channels."""
    if cfg.num_d > 1:
        return MultiscaleDiscriminator(in_channels, cfg.num_d, cfg.ndf, cfg.n_layers, cfg.norm)
    return PatchDiscriminator(in_channels, cfg.ndf, cfg.n_layers, cfg.norm)
