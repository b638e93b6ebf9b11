"""Inference-only rewrites of a trained generator: batch norms folded into convolutions, low-precision weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from diptych.config import GeneratorConfig
from diptych.nets import HDConfig, UNetConfig, create_generator, init_weights
from diptych.nets.inference import fold_batch_norms, prepare_for_inference, store_conv_weights
from diptych.tiling import axis_totals, blend_weights, plan_axis


def trained_like(cfg: GeneratorConfig) -> nn.Module:
    """A generator with non-trivial batch-norm statistics, as training leaves them."""
    torch.manual_seed(0)
    g = create_generator(cfg)
    init_weights(g)
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.2)
    return g.eval()


@pytest.mark.parametrize(
    "cfg",
    [
        UNetConfig(in_channels=3, out_channels=2, depth=5, ngf=8),
        UNetConfig(in_channels=1, out_channels=3, depth=4, ngf=8, upsample="resize"),
        UNetConfig(in_channels=3, out_channels=3, depth=4, ngf=8, upsample="bilinear"),
        HDConfig(in_channels=3, out_channels=3, ngf=4, n_local=1, n_down_global=2, n_blocks_global=2, norm="batch"),
    ],
)
def test_folding_batch_norms_keeps_the_output(cfg: GeneratorConfig) -> None:
    g = trained_like(cfg)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    x = torch.rand(2, cfg.in_channels, 64, 96) * 2 - 1
    with torch.no_grad():
        expected = g(x)
        assert fold_batch_norms(g) == norms > 0  # every norm follows a convolution
        got = g(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    assert torch.allclose(got, expected, atol=2e-5), (got - expected).abs().max()


def test_nothing_is_folded_in_training_mode_or_without_batch_norm() -> None:
    g = create_generator(UNetConfig(in_channels=3, out_channels=3, depth=4, ngf=8))
    assert fold_batch_norms(g) == 0  # training mode: batch statistics, not constants
    inst = create_generator(UNetConfig(in_channels=3, out_channels=3, depth=4, ngf=8, norm="instance"))
    assert fold_batch_norms(inst.eval()) == 0


def test_low_precision_weights_match_autocast() -> None:
    """Under autocast the convolution weights are cast to bf16 anyway: storing them so changes nothing."""
    cfg = UNetConfig(in_channels=3, out_channels=3, depth=4, ngf=8)
    g = trained_like(cfg)
    x = torch.rand(1, 3, 48, 64) * 2 - 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = g(x).float()
        store_conv_weights(g, torch.bfloat16)
        got = g(x).float()
    assert all(p.dtype == torch.bfloat16 for m in g.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())
    assert all(m.running_mean.dtype == torch.float32 for m in g.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(got, expected)
    prepare_for_inference(g, None)
    assert not any(p.requires_grad for p in g.parameters())


def test_blend_weight_totals_are_separable() -> None:
    """The 2-D weight sum of all tiles is the outer product of the per-axis totals (no image-sized sum needed)."""
    ys, xs = plan_axis(700, 256, 100, 64), plan_axis(530, 192, 80, 64)
    full = np.zeros((700, 530), dtype=np.float64)
    for i, (y0, y1) in enumerate(ys):
        for j, (x0, x1) in enumerate(xs):
            full[y0:y1, x0:x1] += np.outer(blend_weights(ys, i), blend_weights(xs, j))
    assert np.allclose(np.outer(axis_totals(ys, 700), axis_totals(xs, 530)), full, atol=1e-6)
