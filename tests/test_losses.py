"""GAN loss values on known logits and the WGAN-GP penalty's value and gradient."""

from __future__ import annotations

import math

import pytest
import torch

from diptych.losses import AdversarialLoss, gradient_penalty, l1_loss

LOGITS = torch.tensor([[-2.0, 0.0], [1.0, 3.0]])


def _bce(x: float, y: float) -> float:
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_vanilla_is_bce_with_logits() -> None:
    loss = AdversarialLoss("vanilla")
    real = sum(_bce(x, 1.0) for x in LOGITS.flatten().tolist()) / 4
    fake = sum(_bce(x, 0.0) for x in LOGITS.flatten().tolist()) / 4
    assert loss(LOGITS, True).item() == pytest.approx(real, rel=1e-6)
    assert loss(LOGITS, False).item() == pytest.approx(fake, rel=1e-6)
    assert loss(LOGITS, True, for_discriminator=False).item() == pytest.approx(real, rel=1e-6)


def test_lsgan_is_mse_to_targets() -> None:
    loss = AdversarialLoss("lsgan")
    assert loss(LOGITS, True).item() == pytest.approx((9 + 1 + 0 + 4) / 4)
    assert loss(LOGITS, False).item() == pytest.approx((4 + 0 + 1 + 9) / 4)


def test_hinge_discriminator_and_generator_sides() -> None:
    loss = AdversarialLoss("hinge")
    # D real: mean(relu(1 - x)) = (3 + 1 + 0 + 0) / 4; D fake: mean(relu(1 + x)) = (0 + 1 + 2 + 4) / 4
    assert loss(LOGITS, True, for_discriminator=True).item() == pytest.approx(1.0)
    assert loss(LOGITS, False, for_discriminator=True).item() == pytest.approx(1.75)
    # G: -mean(x)
    assert loss(LOGITS, True, for_discriminator=False).item() == pytest.approx(-0.5)


def test_wgan_critic_scores() -> None:
    loss = AdversarialLoss("wgangp")
    assert loss(LOGITS, True).item() == pytest.approx(-0.5)
    assert loss(LOGITS, False).item() == pytest.approx(0.5)
    assert loss(LOGITS, True, for_discriminator=False).item() == pytest.approx(-0.5)


def test_unknown_loss_rejected() -> None:
    with pytest.raises(ValueError):
        AdversarialLoss("wasserstein")


def test_gradient_penalty_of_linear_critic() -> None:
    """For f(x) = <w, x> the gradient is w everywhere, so the penalty is (||w|| - 1)^2."""
    w = torch.tensor([3.0, 4.0, 0.0, 0.0]).reshape(1, 1, 2, 2).requires_grad_(True)

    def critic(x: torch.Tensor) -> torch.Tensor:
        return (x * w).flatten(1).sum(1)

    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2)
    # The penalty is differentiable in the critic's parameters: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
    gp.backward()
    expected = 2 * (5.0 - 1.0) * w.detach() / 5.0
    assert torch.allclose(w.grad, expected)


def test_gradient_penalty_zero_for_unit_gradient() -> None:
    w = torch.zeros(1, 1, 1, 2)
    w[..., 0] = 1.0
    gp = gradient_penalty(lambda x: (x * w).flatten(1).sum(1), torch.randn(3, 1, 1, 2), torch.randn(3, 1, 1, 2))
    assert gp.item() == pytest.approx(0.0, abs=1e-7)


def test_gradient_penalty_interpolates_between_real_and_fake() -> None:
    seen = []

    def critic(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return x.flatten(1).sum(1)

    real, fake = torch.zeros(64, 1, 1, 1), torch.ones(64, 1, 1, 1)
    gradient_penalty(critic, real, fake)
    alphas = seen[0].flatten()
    assert alphas.min() >= 0 and alphas.max() <= 1 and alphas.std() > 0.1  # a different mix per sample


def test_l1() -> None:
    assert l1_loss(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0])).item() == 1.0


def test_wgangp_penalty_changes_the_discriminator_update() -> None:
    """The recipe really adds lambda_gp * penalty to D's loss (the reference's wgangp never applied it)."""
    from diptych.config import RunConfig
    from diptych.recipes import Pix2PixRecipe

    def d_after_one_step(lambda_gp: float) -> list[torch.Tensor]:
        cfg = RunConfig()
        cfg.generator.depth, cfg.generator.ngf, cfg.generator.in_channels, cfg.generator.out_channels = 3, 4, 3, 3
        cfg.discriminator.ndf, cfg.discriminator.n_layers, cfg.discriminator.norm = 4, 2, "instance"
        cfg.method.gan_loss, cfg.method.lambda_gp = "wgangp", lambda_gp
        torch.manual_seed(0)
        recipe = Pix2PixRecipe(cfg, torch.device("cpu"))
        batch = {"A": torch.rand(2, 3, 16, 16) * 2 - 1, "B": torch.rand(2, 3, 16, 16) * 2 - 1}
        losses = recipe.train_step(batch)
        assert ("D_gp" in losses) == (lambda_gp > 0)
        return [p.detach().clone() for p in recipe.networks["discriminator"].parameters()]

    with_gp, without_gp = d_after_one_step(10.0), d_after_one_step(0.0)
    assert any(not torch.equal(a, b) for a, b in zip(with_gp, without_gp, strict=True))
