"""Mixed precision without touching parameter names: a module's forward runs under autocast, outputs in fp32."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")


def _to_float(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, list | tuple):
        return type(x)(_to_float(v) for v in x)
    return x


def use_precision(module: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """Make `module.forward` run under bf16 autocast (weights and optimiser state stay fp32); fp32 is a no-op.

    Only the forward pass is autocast; backward runs outside it, as PyTorch recommends. Outputs come back as
    fp32 so losses are computed in full precision.
    """
    if precision == "fp32":
        return module
    if precision != "bf16":
        raise ValueError(f"unknown precision {precision!r}")
    inner = module.forward

    @functools.wraps(inner)
    def forward(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            return _to_float(inner(*args, **kwargs))

    module.forward = forward  # type: ignore[method-assign]
    return module
