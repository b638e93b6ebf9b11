"""Small layer helpers shared by the networks: norms, conv bias rules, weight init, stride padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer: batch (affine, running stats), instance (no affine, as pix2pix), or none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def conv_bias(norm: str) -> bool:
    """Whether a conv directly followed by `norm` needs a bias (mean-subtracting norms cancel it)."""
    return norm == "none"


def init_weights(module: nn.Module, kind: str = "normal", gain: float = 0.02) -> None:
    """Initialise conv/linear weights (normal, xavier, kaiming, orthogonal), zero biases, BN weight ~ N(1, gain)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif kind == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"unknown init {kind!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad H and W up to a multiple, and at least `minimum` (repeating the reflection for tiny images);
    return the original size."""
    h, w = x.shape[-2:]
    target_h = max(-(-h // multiple) * multiple, minimum)
    target_w = max(-(-w // multiple) * multiple, minimum)
    while x.shape[-2] < target_h or x.shape[-1] < target_w:
        cur_h, cur_w = x.shape[-2:]
        # Reflection can add at most size - 1 pixels per side per pass.
        pad_h = min(target_h - cur_h, cur_h - 1) if cur_h > 1 else 0
        pad_w = min(target_w - cur_w, cur_w - 1) if cur_w > 1 else 0
        if pad_h == 0 and pad_w == 0:
            x = F.pad(x, (0, target_w - cur_w, 0, target_h - cur_h), mode="replicate")
            break
        top, left = pad_h // 2, pad_w // 2
        x = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="reflect")
    return x, (h, w)


def crop_padded(y: torch.Tensor, x_padded_shape: torch.Size, size: tuple[int, int]) -> torch.Tensor:
    """Undo pad_to_multiple on an output of the same spatial size as the padded input."""
    h, w = size
    ph, pw = x_padded_shape[-2], x_padded_shape[-1]
    if (ph, pw) == (h, w):
        return y
    # pad_to_multiple splits each pass's padding evenly; recompute where the original lies.
    top, left = _original_offset(h, ph), _original_offset(w, pw)
    return y[..., top : top + h, left : left + w]


def _original_offset(size: int, target: int) -> int:
    """Offset of the original rows inside the padded rows, mirroring pad_to_multiple's passes."""
    offset, cur = 0, size
    while cur < target:
        pad = min(target - cur, cur - 1) if cur > 1 else 0
        if pad == 0:
            break
        offset += pad // 2
        cur += pad
    return offset
