"""Mixed precision without touching parameter names, and an optimiser step that survives overflow.

A module's forward runs under autocast (bf16 or fp16) with outputs returned in fp32; weights and optimiser
state stay fp32. `AmpStep` runs one network's update: backward (through a GradScaler for fp16), a check
that the loss and gradients are finite, and, when they are not, the same update recomputed in fp32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .config import PRECISIONS
from .errors import ConfigError, DiptychError

__all__ = [
    "AUTOCAST_DTYPES",
    "PRECISIONS",
    "AmpStep",
    "full_precision",
    "in_fallback",
    "resolve_precision",
    "use_precision",
]

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # what each precision's autocast computes in

_full_precision = [False]  # set while a step is being recomputed in fp32


class TrainingDiverged(DiptychError):
    """A loss or gradient is NaN/inf even in fp32."""


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 runs natively here: a CUDA GPU with bf16, or a CPU with AVX-512 bf16 / AMX (oneDNN's check)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check and check())
    return False


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tile units (Intel Xeon since Sapphire Rapids), where oneDNN's bf16 convolutions
    run fastest on channels-last tensors."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check())


def resolve_precision(precision: str, device: torch.device, sample_type: str = "uint8") -> str:
    """`auto` becomes bf16 where the hardware runs it natively, else fp32; fp16 is for CUDA only.

    `sample_type` is what outputs are written in: bf16's 8-bit mantissa keeps 8-bit outputs within one level
    of fp32, but would cut 16-bit and float outputs to about 8 bits, so `auto` stays fp32 for those."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    if precision == "auto":
        return "bf16" if fast_bf16(device) and sample_type in ("", "uint8") else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"--precision fp16 needs a CUDA device (this run uses {device}); use bf16 or fp32")
    return precision


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Run wrapped forwards in fp32 inside this block (the overflow fallback)."""
    _full_precision[0] = True
    try:
        yield
    finally:
        _full_precision[0] = False


def in_fallback() -> bool:
    """Whether a step is being recomputed in fp32 right now."""
    return _full_precision[0]


def _to_float(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, list | tuple):
        return type(x)(_to_float(v) for v in x)
    return x


def use_precision(module: nn.Module, precision: str, device: torch.device, fallback: bool = True) -> nn.Module:
    """Make `module.forward` run under bf16/fp16 autocast (weights and optimiser state stay fp32); fp32 is a no-op.

    Only the forward pass is autocast; backward runs outside it, as PyTorch recommends. Outputs come back as
    fp32 so losses are computed in full precision. With `fallback` (training) the forward runs in fp32 inside
    `full_precision()`; without it (a Translator, whose conv weights may be stored in bf16) it never does.
    """
    if precision == "fp32":
        return module
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}")
    dtype = AUTOCAST_DTYPES[precision]
    inner = module.forward

    @functools.wraps(inner)
    def forward(*args: Any, **kwargs: Any) -> Any:
        if fallback and _full_precision[0]:
            return inner(*args, **kwargs)
        with torch.autocast(device_type=device.type, dtype=dtype):
            return _to_float(inner(*args, **kwargs))

    module.forward = forward  # type: ignore[method-assign]
    return module


Phase = Callable[[bool], tuple[dict[str, Any], torch.Tensor]]


class AmpStep:
    """One network's optimiser update under the run's precision, with a NaN/inf guard.

    fp16 scales the loss (GradScaler) so small gradients survive; a step whose gradients overflow is skipped
    by the scaler and recomputed in fp32. bf16 has fp32's range, so only a non-finite loss triggers the
    fp32 recomputation. A loss that is non-finite in fp32 too stops training with a clear error.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision = precision
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.fallbacks = 0  # steps recomputed in fp32 so far (logged by the trainer)
        # Every process must take the same branch: a multi-process run replaces this with an all-reduce.
        self.any_rank: Callable[[bool], bool] = lambda flag: flag

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of one (micro-)batch's loss, scaled for fp16 outside the fallback."""
        if self.scaler is not None and not in_fallback():
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def run(self, optimizer: torch.optim.Optimizer, phase: Phase) -> dict[str, Any]:
        """Zero the gradients, run `phase` (forwards + `backward` calls; returns (losses to log, all-finite flag))
        and step. `phase(first)` is called again with first=False inside `full_precision()` on overflow."""
        # Freed, not zeroed: Adam skips a parameter whose gradient is None (pix2pixHD's frozen ones), and a freed
        # gradient's memory is reused by the next step's backward (allocator.py), not faulted in again.
        optimizer.zero_grad(set_to_none=True)
        logged, finite = phase(True)
        bad = self.any_rank(not bool(finite.item()))
        if self.precision == "fp32":
            if bad:
                raise TrainingDiverged(
                    "training diverged: a loss is NaN or inf in fp32; lower --lr, check the data for NaN/inf, "
                    "or resume from an earlier checkpoint"
                )
            optimizer.step()
            return logged
        if not bad and self._mixed_step(optimizer):
            return logged
        self.fallbacks += 1
        optimizer.zero_grad(set_to_none=True)
        with full_precision():
            logged, finite = phase(False)
        if self.any_rank(not bool(finite.item())):
            raise TrainingDiverged(
                "training diverged: a loss is NaN or inf even in fp32; lower --lr, check the data for NaN/inf, "
                "or resume from an earlier checkpoint"
            )
        optimizer.step()
        return logged

    def _mixed_step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Step after a mixed-precision backward; False (nothing stepped) when fp16 gradients overflowed."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(
            optimizer
        )  # skipped by the scaler when a gradient overflowed (all ranks agree: grads are reduced)
        self.scaler.update()
        return self.scaler.get_scale() >= scale
