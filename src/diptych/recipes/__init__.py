"""Recipes: how one training step combines networks and losses, one file per method."""

from __future__ import annotations

import torch

from ..config import RunConfig
from .base import Recipe
from .pix2pix import Pix2PixRecipe
from .pix2pixhd import Pix2PixHDRecipe

__all__ = ["Pix2PixHDRecipe", "Pix2PixRecipe", "Recipe", "create_recipe"]

RECIPES: dict[str, type] = {"pix2pix": Pix2PixRecipe, "pix2pixhd": Pix2PixHDRecipe}


def create_recipe(config: RunConfig, device: torch.device) -> Recipe:
    """Build the recipe a config names, with its networks on `device`."""
    return RECIPES[config.recipe](config, device)
