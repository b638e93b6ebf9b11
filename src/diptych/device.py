"""Choosing the compute device."""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    """'auto' picks CUDA when available, else CPU; anything else is passed to torch.device."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"--device {spec!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {spec}: MPS is not available on this machine; use --device cpu or auto")
    return device
