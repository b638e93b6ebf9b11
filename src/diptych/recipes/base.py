"""What the trainer needs from a recipe."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class Recipe(Protocol):
    """A training method: named networks and optimisers, and one optimisation step on a batch."""

    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    monitor: str  # the loss whose epoch mean drives the plateau learning-rate policy

    def train_step(self, batch: dict[str, object]) -> dict[str, torch.Tensor]:
        """Run one optimisation step; return detached scalar losses by name."""
        ...
