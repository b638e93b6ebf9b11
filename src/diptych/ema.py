"""Exponential moving averages of the generators' weights (--ema), kept by the trainer for every recipe."""

from __future__ import annotations

import copy

import torch
from torch import nn

NORM_STATISTICS = ("running_mean", "running_var")  # the buffers averaged like weights; the rest are copied


def ema_decay(decay: float, step: int) -> float:
    """The decay of the update after optimiser step `step` (counted from 0): min(decay, (1 + step) / (10 + step)),
    so the average follows the fast-changing early weights closely and settles to `decay` (0.999 after 8991 steps)."""
    return min(decay, (1 + step) / (10 + step))


class WeightAverage:
    """An exponential moving average of some networks' parameters and batch-norm running statistics (other buffers
    are copied), in fp32 copies of the networks that the trainer updates after each optimiser step.

    The statistics are averaged with the weights because a copy of the live network's (which follow its last ~10
    batches) does not fit the averaged weights: on a 1000-step colourisation run that mismatch cost 2.3 dB of
    held-out PSNR and painted a red blob at the same place in the held-out outputs (BENCHMARKS.md, pix2pix-plus fourth
    round)."""

    def __init__(self, networks: dict[str, nn.Module], decay: float) -> None:
        """Start every average at its network's current weights; `networks` are bare modules (not DDP wrappers)
        whose forward is not yet wrapped (use_precision): a copy would call the original's."""
        for name, net in networks.items():
            if "forward" in vars(net):
                raise ValueError(f"{name}: copy the network before its forward is wrapped")
        self.decay = decay
        self.modules = {name: copy.deepcopy(net).eval().requires_grad_(False) for name, net in networks.items()}

    @torch.no_grad()
    def update(self, networks: dict[str, nn.Module], step: int) -> None:
        """Move every average towards its network's weights after optimiser step `step` (counted from 0)."""
        weight = 1.0 - ema_decay(self.decay, step)
        for name, average in self.modules.items():
            own = networks[name]
            for (key, avg), (other, p) in zip(average.named_parameters(), own.named_parameters(), strict=True):
                assert key == other, f"{name}: {key} != {other}"
                avg.lerp_(p.detach(), weight)
            for (key, avg), (_, b) in zip(average.named_buffers(), own.named_buffers(), strict=True):
                if key.rsplit(".", 1)[-1] in NORM_STATISTICS:
                    avg.lerp_(b, weight)
                else:
                    avg.copy_(b)
