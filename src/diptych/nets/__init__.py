"""Networks: nn.Modules only (no optimisers, no I/O), built from typed configs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..config import DiscriminatorConfig, GeneratorConfig, generator_section_class, section_from_dict
from ..errors import ConfigError
from .families import GENERATOR_FAMILIES
from .hd import HDConfig, HDGenerator
from .layers import init_weights
from .multiscale import MultiscaleDiscriminator
from .patchgan import PatchDiscriminator, receptive_field
from .resnet import RESNET_DOWNSAMPLINGS, ResnetConfig, ResnetGenerator
from .unet import UNetConfig, UNetGenerator

__all__ = [
    "GENERATOR_FAMILIES",
    "RESNET_DOWNSAMPLINGS",
    "HDConfig",
    "HDGenerator",
    "MultiscaleDiscriminator",
    "PatchDiscriminator",
    "ResnetConfig",
    "ResnetGenerator",
    "UNetConfig",
    "UNetGenerator",
    "check_generator_size",
    "create_discriminator",
    "create_generator",
    "generator_config",
    "generator_spec",
    "init_weights",
    "receptive_field",
    "weight_bytes",
]

# The largest network diptych builds: 4 GiB of fp32 weights (1.07G parameters; pix2pixHD's generator at --ngf 64
# holds 2.7 GiB, at its recipe's --ngf 32 0.7 GiB). Widths and depths multiply, so fields each within their range
# can still describe a network too large for any machine.
MAX_WEIGHT_BYTES = 4 << 30


def create_generator(cfg: GeneratorConfig) -> nn.Module:
    """Build the generator a config describes (channels must already be filled in), once its size is checked."""
    check_generator_size(cfg)
    return cfg.build()


def check_generator_size(cfg: GeneratorConfig) -> None:
    """Refuse (ConfigError) a generator whose weights would exceed MAX_WEIGHT_BYTES, without allocating them."""
    if cfg.in_channels < 1 or cfg.out_channels < 1:
        raise ValueError("generator channels are not set; they come from the data")
    _check_size("generator", cfg.build)


def generator_spec(cfg: GeneratorConfig) -> dict[str, Any]:
    """A generator's architecture as a checkpoint manifest stores it: its family's fields."""
    return {"kind": "generator", **dataclasses.asdict(cfg)}


def generator_config(spec: dict[str, Any], source: str) -> GeneratorConfig:
    """The generator config of a manifest's generator spec (ConfigError naming `source` if it is not one)."""
    if not isinstance(spec, dict) or spec.get("kind") != "generator":
        raise ConfigError(f"{source}: not a generator's architecture spec")
    fields = {k: v for k, v in spec.items() if k != "kind"}
    return section_from_dict("generator", fields, source, generator_section_class(fields, source))


def create_discriminator(cfg: DiscriminatorConfig, in_channels: int) -> nn.Module:
    """Build the (conditional) discriminator, once its size is checked; in_channels = input + output channels."""

    def build() -> nn.Module:
        if cfg.num_d > 1:
            return MultiscaleDiscriminator(in_channels, cfg.num_d, cfg.ndf, cfg.n_layers, cfg.norm, cfg.spectral_norm)
        return PatchDiscriminator(in_channels, cfg.ndf, cfg.n_layers, cfg.norm, cfg.spectral_norm)

    _check_size("discriminator", build)
    return build()


def weight_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (also for one built on the meta device)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _check_size(what: str, build: Callable[[], nn.Module]) -> None:
    """build() on the meta device (no memory) to weigh it; refuse it over MAX_WEIGHT_BYTES."""
    with torch.device("meta"):
        size = weight_bytes(build())
    if size > MAX_WEIGHT_BYTES:
        raise ConfigError(
            f"the {what} this configuration describes has {size / 2**30:.1f} GiB of weights, more than the "
            f"{MAX_WEIGHT_BYTES / 2**30:g} GiB diptych builds; lower its width (--ngf/--ndf) or depth"
        )
