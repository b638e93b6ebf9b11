"""pix2pix: G* = arg min_G max_D L_cGAN(G, D) + lambda_L1 * L_L1(G), with a conditional PatchGAN."""

from __future__ import annotations

import torch

from ..config import RunConfig
from ..losses import AdversarialLoss, gradient_penalty, l1_loss
from ..nets import create_discriminator, create_generator, init_weights
from ..precision import AmpStep, in_fallback, resolve_precision
from .base import adam_optimizers, update_d_then_g


class Pix2PixRecipe:
    """Alternating D and G updates of pix2pix; D sees the input concatenated with the real or generated output."""

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        g_cfg, d_cfg, t = config.generator, config.discriminator, config.train
        self.generator = create_generator(g_cfg).to(device)
        self.discriminator = create_discriminator(d_cfg, g_cfg.in_channels + g_cfg.out_channels).to(device)
        init_weights(self.generator, t.init, t.init_gain)
        init_weights(self.discriminator, t.init, t.init_gain)
        self.networks = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers = adam_optimizers(self.networks, t)
        self.adversarial = AdversarialLoss(t.gan_loss)
        self.lambda_l1 = t.lambda_l1
        self.lambda_gp = t.lambda_gp if t.gan_loss == "wgangp" else 0.0
        self.device = device
        self.monitor = "G_L1"
        self.amp = AmpStep(resolve_precision(t.precision, device), device)
        # pix2pix halves D's loss (vanilla, LSGAN); hinge and WGAN-GP use the plain sum, so lambda_gp means what the paper says.
        self.d_scale = 0.5 if t.gan_loss in ("vanilla", "lsgan") else 1.0

    def train_step(self, batch: dict[str, object]) -> dict[str, torch.Tensor]:
        """One D update then one G update on a batch of pairs."""
        real_a = batch["A"].to(self.device, non_blocking=True)  # type: ignore[union-attr]
        real_b = batch["B"].to(self.device, non_blocking=True)  # type: ignore[union-attr]
        g, d = self.generator, self.discriminator
        fake_b = g(real_a)

        def fake() -> torch.Tensor:  # recomputed in fp32 when the step falls back
            return g(real_a) if in_fallback() else fake_b

        def d_losses() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            # Discriminator: real pairs up, generated pairs down.
            b = fake().detach()
            loss_fake = self.adversarial(d(torch.cat([real_a, b], 1)), False, for_discriminator=True)
            loss_real = self.adversarial(d(torch.cat([real_a, real_b], 1)), True, for_discriminator=True)
            loss = self.d_scale * (loss_fake + loss_real)
            logged = {"D_real": loss_real.detach(), "D_fake": loss_fake.detach()}
            if self.lambda_gp > 0:
                gp = gradient_penalty(lambda x: d(torch.cat([real_a, x], 1)), real_b, b)
                loss = loss + self.lambda_gp * gp
                logged["D_gp"] = gp.detach()
            return loss, logged

        def g_losses() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            # Generator: fool D and stay close to the target in L1.
            b = fake()
            loss_gan = self.adversarial(d(torch.cat([real_a, b], 1)), True, for_discriminator=False)
            loss_l1 = l1_loss(b, real_b)
            return loss_gan + self.lambda_l1 * loss_l1, {"G_GAN": loss_gan.detach(), "G_L1": loss_l1.detach()}

        return update_d_then_g(self, d_losses, g_losses)
