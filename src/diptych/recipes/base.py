"""What the trainer needs from a recipe."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from ..config import TrainConfig


def adam_optimizers(networks: dict[str, nn.Module], t: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """One Adam per network with the run's learning rate and betas (pix2pix's and pix2pixHD's choice)."""
    return {
        name: torch.optim.Adam(net.parameters(), lr=t.lr, betas=(t.beta1, t.beta2)) for name, net in networks.items()
    }


class Recipe(Protocol):
    """A training method: named networks and optimisers, and one optimisation step on a batch."""

    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    monitor: str  # the loss whose epoch mean drives the plateau learning-rate policy

    def train_step(self, batch: dict[str, object]) -> dict[str, torch.Tensor]:
        """Run one optimisation step; return detached scalar losses by name."""
        ...
