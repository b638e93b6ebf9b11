"""What the trainer needs from a recipe."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import torch
from torch import nn

from ..config import TrainConfig
from ..precision import AmpStep


def adam(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    """Adam with the fused kernel where PyTorch has one for the parameters' device (CPU and CUDA since 2.4).

    The fused kernel makes one pass over parameters, gradients and moments; on 2 Zen 4 cores it updates a
    unet_256 (54M parameters) in 16 ms instead of 120 (foreach) or 170 (the per-tensor loop PyTorch picks on
    CPU by default). It computes the same update up to float rounding.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, ValueError, TypeError):  # older torch, or a device without a fused kernel
        return torch.optim.Adam(params, lr=lr, betas=betas)


def adam_optimizers(networks: dict[str, nn.Module], t: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """One Adam per network with the run's learning rate and betas (pix2pix's and pix2pixHD's choice)."""
    return {name: adam(net.parameters(), t.lr, (t.beta1, t.beta2)) for name, net in networks.items()}


Losses = Callable[[], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def update_d_then_g(recipe: Recipe, d_losses: Losses, g_losses: Losses) -> dict[str, torch.Tensor]:
    """The GAN alternation: one discriminator update, then one generator update with D frozen.

    Each closure returns (loss to minimise, losses to log) and is re-run in fp32 if its step overflows.
    """
    d, opt_d, opt_g = (
        recipe.networks["discriminator"],
        recipe.optimizers["discriminator"],
        recipe.optimizers["generator"],
    )
    d.requires_grad_(True)
    opt_d.zero_grad(set_to_none=True)
    losses = recipe.amp.update(opt_d, d_losses)
    d.requires_grad_(False)  # G's backward passes through D without computing D's weight gradients
    opt_g.zero_grad(set_to_none=True)
    losses.update(recipe.amp.update(opt_g, g_losses))
    return losses


class Recipe(Protocol):
    """A training method: named networks and optimisers, and one optimisation step on a batch."""

    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    monitor: str  # the loss whose epoch mean drives the plateau learning-rate policy
    amp: AmpStep  # backward + optimiser step under the run's precision, with the overflow fallback

    def train_step(self, batch: dict[str, object]) -> dict[str, torch.Tensor]:
        """Run one optimisation step; return detached scalar losses by name."""
        ...
