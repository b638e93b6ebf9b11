"""The generator families: GENERATOR_FAMILIES maps each --arch name to its config class, the one registry that the
configuration, the CLI, checkpoints and export read.

A family is one module in nets/: its network, and a GeneratorConfig subclass with its own fields (defaults and
bounds), `arch` set to its name, its --netG presets, and how it builds its network and gives its geometry. Adding one
is that module and its class in the tuple below (docs/architecture.md has the checklist).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import GeneratorConfig
from .compact import CompactConfig
from .hd import HDConfig
from .resnet import ResnetConfig
from .rrdb import RRDBNetConfig
from .srresnet import MSRResNetConfig
from .unet import UNetConfig


def by_name(*families: type[GeneratorConfig]) -> dict[str, type[GeneratorConfig]]:
    """Families by their `arch`; a field several families have is one option (of one type and the same choices),
    a preset one name."""
    kinds: dict[str, tuple[str, Any]] = {}
    presets: set[str] = set()
    for family in families:
        for f in dataclasses.fields(family):
            kind = (str(f.type), f.metadata.get("choices"))
            if kinds.setdefault(f.name, kind) != kind:
                raise TypeError(f"{family.__name__}.{f.name} is a {kind}; another family's is a {kinds[f.name]}")
        if presets & set(family.presets):
            raise TypeError(
                f"{family.__name__} reuses a preset name of another family: {presets & set(family.presets)}"
            )
        presets |= set(family.presets)
    return {family.arch_name(): family for family in families}


# The first is the default (pix2pix's U-Net).
GENERATOR_FAMILIES = by_name(UNetConfig, ResnetConfig, HDConfig, MSRResNetConfig, RRDBNetConfig, CompactConfig)
