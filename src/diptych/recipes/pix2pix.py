"""pix2pix: G* = arg min_G max_D L_cGAN(G, D) + lambda_L1 * L_L1(G), with a conditional PatchGAN."""

from __future__ import annotations

import torch
from torch import nn

from ..config import RunConfig
from ..losses import AdversarialLoss, gradient_penalty, l1_loss
from ..nets import create_discriminator, create_generator, init_weights
from ..precision import AmpStep, resolve_precision
from .base import GANRecipe, Losses, adam_optimizers


class Pix2PixRecipe(GANRecipe):
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
        self.accum_steps = t.accum_steps
        self.amp = AmpStep(resolve_precision(t.precision, device, config.data.sample_type), device)
        # pix2pix halves D's loss (vanilla, LSGAN); hinge and WGAN-GP use the plain sum, so lambda_gp means what the paper says.
        self.d_scale = 0.5 if t.gan_loss in ("vanilla", "lsgan") else 1.0

    def discriminator_loss(
        self, d: nn.Module, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor
    ) -> tuple[torch.Tensor, Losses]:
        """Real pairs up, generated pairs down (+ lambda_gp x gradient penalty for WGAN-GP)."""
        loss_d_fake = self.adversarial(d(torch.cat([real_a, fake_b], 1)), False, for_discriminator=True)
        loss_d_real = self.adversarial(d(torch.cat([real_a, real_b], 1)), True, for_discriminator=True)
        loss_d = self.d_scale * (loss_d_fake + loss_d_real)
        losses = {"D_real": loss_d_real.detach(), "D_fake": loss_d_fake.detach()}
        if self.lambda_gp > 0:
            gp = gradient_penalty(lambda b: d(torch.cat([real_a, b], 1)), real_b, fake_b)
            loss_d = loss_d + self.lambda_gp * gp
            losses["D_gp"] = gp.detach()
        return loss_d, losses

    def generator_loss(
        self, d: nn.Module, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor
    ) -> tuple[torch.Tensor, Losses]:
        """Fool D and stay close to the target in L1."""
        loss_g_gan = self.adversarial(d(torch.cat([real_a, fake_b], 1)), True, for_discriminator=False)
        loss_g_l1 = l1_loss(fake_b, real_b)
        return loss_g_gan + self.lambda_l1 * loss_g_l1, {"G_GAN": loss_g_gan.detach(), "G_L1": loss_g_l1.detach()}
