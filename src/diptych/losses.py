"""Adversarial losses (vanilla, LSGAN, hinge, WGAN-GP with its gradient penalty) and reconstruction losses."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class AdversarialLoss(nn.Module):
    """GAN objective on discriminator logits; the discriminator and generator sides differ for hinge."""

    def __init__(self, mode: str = "vanilla") -> None:
        super().__init__()
        if mode not in ("vanilla", "lsgan", "hinge", "wgangp"):
            raise ValueError(f"unknown GAN loss {mode!r}")
        self.mode = mode

    def forward(self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        logits = logits.float()
        if self.mode == "vanilla":
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            return F.binary_cross_entropy_with_logits(logits, target)
        if self.mode == "lsgan":
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            return F.mse_loss(logits, target)
        if self.mode == "hinge" and for_discriminator:
            return F.relu(1.0 - logits).mean() if target_is_real else F.relu(1.0 + logits).mean()
        # WGAN critic (both sides) and the hinge generator: maximise the score of what should look real.
        return -logits.mean() if target_is_real else logits.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad critic(x_hat)||_2 - 1)^2] on random per-sample interpolates of real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype, generator=generator)
    interp = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(interp)
    (grads,) = torch.autograd.grad(scores.sum(), interp, create_graph=True)
    norms = grads.flatten(1).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, computed in float32."""
    return F.l1_loss(output.float(), target.float())
