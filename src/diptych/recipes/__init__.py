"""Recipes: one module per training method; RECIPES is the one registry of them (the CLI is generated from it)."""

from __future__ import annotations

import torch

from ..config import RunConfig
from .base import PAIRED, SR, UNPAIRED, Recipe, Updater
from .cyclegan import CycleGANRecipe
from .pix2pix import Pix2PixRecipe
from .pix2pix_plus import Pix2PixPlusRecipe
from .pix2pixhd import Pix2PixHDRecipe
from .sr import ESRGANRecipe, RealESRGANRecipe, SRRecipe

__all__ = [
    "PAIRED",
    "RECIPES",
    "SR",
    "UNPAIRED",
    "CycleGANRecipe",
    "ESRGANRecipe",
    "Pix2PixHDRecipe",
    "Pix2PixPlusRecipe",
    "Pix2PixRecipe",
    "RealESRGANRecipe",
    "Recipe",
    "SRRecipe",
    "Updater",
    "create_recipe",
]

RECIPES: dict[str, type[Recipe]] = {
    r.name: r
    for r in (
        Pix2PixRecipe,
        Pix2PixPlusRecipe,
        Pix2PixHDRecipe,
        CycleGANRecipe,
        SRRecipe,
        ESRGANRecipe,
        RealESRGANRecipe,
    )
}


def create_recipe(config: RunConfig, device: torch.device) -> Recipe:
    """Build the recipe a config names, with its networks on `device`."""
    return RECIPES[config.recipe](config, device)
