"""pix2pix: G* = arg min_G max_D L_cGAN(G, D) + lambda_L1 * L_L1(G), with a conditional PatchGAN."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import GAN_LOSSES, LOSS_WEIGHT, RunConfig, opt
from ..errors import ConfigError
from ..losses import AdversarialLoss, gradient_penalty, l1_loss
from ..nets import create_discriminator, create_generator, generator_spec
from .base import PAIRED, Losses, Recipe, adam_optimizers, check_patchgan_fits, warn_below_generator_stride


@dataclass
class Pix2PixConfig:
    """pix2pix's losses."""

    gan_loss: str = opt("vanilla", "adversarial loss", choices=GAN_LOSSES)
    lambda_l1: float = opt(100.0, "weight of the L1 reconstruction loss", bounds=LOSS_WEIGHT)
    lambda_gp: float = opt(10.0, "weight of the WGAN-GP gradient penalty (wgangp only)", bounds=LOSS_WEIGHT)


class ConditionalGANRecipe(Recipe):
    """One generator A -> B and one conditional discriminator on (input, output) pairs, updated D then G per step
    (pix2pix's order); subclasses define the two losses."""

    data_kind = PAIRED
    discriminator_kind = "patchgan"

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.networks = {"generator": self.build_generator(config), "discriminator": self.build_discriminator(config)}
        for net in self.networks.values():
            net.to(device)
        self.initialise_weights()
        self.calls = dict(self.networks)
        self.optimizers = adam_optimizers(self.networks, config.train, discriminators=["discriminator"])
        self.adversarial = AdversarialLoss(self.options.gan_loss)
        # pix2pix halves D's loss (vanilla, LSGAN); hinge and WGAN-GP use the plain sum, so lambda_gp means what the paper says.
        self.d_scale = 0.5 if self.options.gan_loss in ("vanilla", "lsgan") else 1.0

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Paired layouts only."""
        if config.data.layout == "cyclegan":
            raise ConfigError(
                f"--layout cyclegan holds unpaired domains; --recipe {cls.name} trains on pairs (use --recipe cyclegan)"
            )

    @classmethod
    def network_specs(cls, config: RunConfig) -> dict[str, dict[str, Any]]:
        """The generator's config; the conditional discriminator's, with its input channels."""
        g = config.generator
        d = {"kind": cls.discriminator_kind, "in_channels": g.in_channels + g.out_channels}
        return {"generator": generator_spec(g), "discriminator": {**d, **dataclasses.asdict(config.discriminator)}}

    def build_generator(self, config: RunConfig) -> nn.Module:
        """The generator the config describes."""
        return create_generator(config.generator)

    def build_discriminator(self, config: RunConfig) -> nn.Module:
        """The conditional discriminator: it sees the input and the (real or generated) output, concatenated."""
        g = config.generator
        return create_discriminator(config.discriminator, g.in_channels + g.out_channels)

    @classmethod
    def check_data(cls, config: RunConfig, summary: Any, warn: Callable[[str], None]) -> None:
        """Images large enough for the PatchGAN; a warning below the generator's stride."""
        check_patchgan_fits(config, summary)
        warn_below_generator_stride(config, summary.min_side, warn)

    def example_inputs(self, side: int) -> dict[str, tuple[torch.Tensor, ...]]:
        """G sees the input; D the input and an output, concatenated."""
        g = self.config.generator
        x = torch.zeros(1, g.in_channels, side, side, device=self.device)
        y = torch.zeros(1, g.out_channels, side, side, device=self.device)
        return {"generator": (x,), "discriminator": (torch.cat([x, y], 1),)}

    def discriminator_loss(
        self, d: nn.Module, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor
    ) -> tuple[torch.Tensor, Losses]:
        """D's loss on a (micro-)batch, fake_b detached; returns (loss, detached parts to log)."""
        raise NotImplementedError

    def generator_loss(
        self, d: nn.Module, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor
    ) -> tuple[torch.Tensor, Losses]:
        """G's loss on a (micro-)batch, through a D whose parameters are frozen; returns (loss, parts to log)."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, Any]) -> Losses:
        """One D update, then one G update, over the run's micro-batches.

        With one micro-batch G runs once and its output keeps its graph for G's update; with several, G's
        activations are not kept across micro-batches: it runs again in G's update, with the same random draws."""
        micro = self.updater.split(batch, ("A", "B"))
        n = len(micro)
        g, d = self.calls["generator"], self.calls["discriminator"]
        d_frozen = self.networks["discriminator"]  # G's update goes through the bare D, which is not trained then
        fakes: list[torch.Tensor] = []

        def d_loss(i: int, first: bool) -> tuple[torch.Tensor, Losses]:
            del fakes[i:]
            with self.updater.draws(i):
                if n == 1:
                    fake_b = g(micro[i]["A"])
                else:
                    with torch.no_grad():
                        fake_b = g(micro[i]["A"])
            fakes.append(fake_b)
            return self.discriminator_loss(d, micro[i]["A"], micro[i]["B"], fake_b.detach())

        def g_loss(i: int, first: bool) -> tuple[torch.Tensor, Losses]:
            if n == 1 and first:
                fake_b = fakes[0]
            else:
                with self.updater.draws(i):
                    fake_b = g(micro[i]["A"])
            return self.generator_loss(d_frozen, micro[i]["A"], micro[i]["B"], fake_b)

        d.requires_grad_(True)
        losses = self.updater.update(self.optimizers["discriminator"], [d], n, d_loss)
        d_frozen.requires_grad_(False)
        losses.update(self.updater.update(self.optimizers["generator"], [g], n, g_loss))
        return losses


class Pix2PixRecipe(ConditionalGANRecipe):
    """Alternating D and G updates of pix2pix; D sees the input concatenated with the real or generated output."""

    name = "pix2pix"
    help = "pix2pix (paired): U-Net generator, conditional PatchGAN, GAN + lambda_l1 x L1"
    section = Pix2PixConfig

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.lambda_l1 = self.options.lambda_l1
        self.lambda_gp = self.options.lambda_gp if self.options.gan_loss == "wgangp" else 0.0

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Paired data and one discriminator scale: more is pix2pixHD's."""
        super().check_config(config)
        if config.discriminator.num_d > 1:
            raise ConfigError("--num-d > 1 is pix2pixHD's multi-scale discriminator: use --recipe pix2pixhd")

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
