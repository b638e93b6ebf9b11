"""Mixed precision: `auto` resolution, and the optimiser step that falls back to fp32 on overflow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diptych.errors import ConfigError
from diptych.precision import AmpStep, TrainingDiverged, fast_bf16, resolve_precision, use_precision

CPU = torch.device("cpu")


class Spiky(nn.Module):
    """A linear layer whose output is inf under autocast only: an overflow that fp32 does not have."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        return y * float("inf") if torch.is_autocast_enabled("cpu") else y


def test_auto_resolves_to_what_the_hardware_runs() -> None:
    assert resolve_precision("auto", CPU) == ("bf16" if fast_bf16(CPU) else "fp32")
    # bf16 would cut 16-bit and float outputs to about 8 bits: auto keeps those in fp32.
    assert resolve_precision("auto", CPU, "uint16") == resolve_precision("auto", CPU, "float32") == "fp32"
    assert resolve_precision("bf16", CPU, "uint16") == "bf16"  # asked for explicitly
    assert resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)


def phase(amp: AmpStep, loss_of: object) -> object:
    """A recipe-style phase: forward, backward through the AmpStep, report the loss and whether it is finite."""

    def run(first: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        loss = loss_of()  # type: ignore[operator]
        amp.backward(loss)
        return {"loss": loss.detach()}, torch.isfinite(loss.detach())

    return run


def test_bf16_overflow_recomputes_the_step_in_fp32() -> None:
    torch.manual_seed(0)
    net = use_precision(Spiky(), "bf16", CPU)
    before = net.lin.weight.detach().clone()
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    amp = AmpStep("bf16", CPU)
    x = torch.randn(8, 4)

    logged = amp.run(opt, phase(amp, lambda: net(x).square().mean()))
    assert amp.fallbacks == 1
    assert torch.isfinite(logged["loss"])  # the logged loss is the fp32 one
    assert torch.isfinite(net.lin.weight).all()
    assert not torch.equal(net.lin.weight, before)  # the step was taken, in fp32


def test_fp16_gradient_overflow_is_skipped_by_the_scaler_then_recomputed() -> None:
    torch.manual_seed(0)
    net = use_precision(nn.Linear(4, 1), "fp16", CPU)
    opt = torch.optim.SGD(net.parameters(), lr=1e-40)
    amp = AmpStep("fp16", CPU)
    x = torch.randn(8, 4)
    # Finite in fp32, but the scaler's 65536x loss scale makes the gradients overflow.
    amp.run(opt, phase(amp, lambda: net(x).sum() * 1e35))
    assert amp.fallbacks == 1
    assert amp.scaler is not None and amp.scaler.get_scale() < 65536.0
    assert torch.isfinite(net.weight).all()
    # A well-scaled step goes through the scaler without a fallback.
    amp.run(opt, phase(amp, lambda: net(x).mean() * 1e-2))
    assert amp.fallbacks == 1


def test_a_loss_that_is_not_finite_in_fp32_stops_training() -> None:
    net = nn.Linear(4, 1)
    opt = torch.optim.Adam(net.parameters())
    with pytest.raises(TrainingDiverged, match="training diverged"):
        amp = AmpStep("fp32", CPU)
        amp.run(opt, phase(amp, lambda: net(torch.randn(2, 4)).sum() * float("nan")))
