"""Networks: nn.Modules only (no optimisers, no I/O), built from typed configs."""

from __future__ import annotations

from torch import nn

from ..config import DiscriminatorConfig, GeneratorConfig
from .layers import init_weights
from .patchgan import PatchDiscriminator, receptive_field
from .unet import UNetGenerator

__all__ = [
    "PatchDiscriminator",
    "UNetGenerator",
    "create_discriminator",
    "create_generator",
    "init_weights",
    "receptive_field",
]


def create_generator(cfg: GeneratorConfig) -> nn.Module:
    """Build the generator a config describes (channels must already be filled in)."""
    if cfg.in_channels < 1 or cfg.out_channels < 1:
        raise ValueError("generator channels are not set; they come from the data")
    if cfg.arch == "unet":
        return UNetGenerator(cfg.in_channels, cfg.out_channels, cfg.depth, cfg.ngf, cfg.norm, cfg.dropout, cfg.upsample)
    raise ValueError(f"unknown generator arch {cfg.arch!r}")


def create_discriminator(cfg: DiscriminatorConfig, in_channels: int) -> nn.Module:
    """Build the (conditional) discriminator; in_channels = input + output channels."""
    return PatchDiscriminator(in_channels, cfg.ndf, cfg.n_layers, cfg.norm)
