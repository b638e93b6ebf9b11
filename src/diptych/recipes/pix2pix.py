"""pix2pix: G* = arg min_G max_D L_cGAN(G, D) + lambda_L1 * L_L1(G), with a conditional PatchGAN."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import GAN_LOSSES, LOSS_WEIGHT, Bounds, RunConfig, opt
from ..errors import ConfigError
from ..losses import AdversarialLoss, STLPIPSLoss, gradient_penalty, l1_loss
from ..metrics.lpips import NETS, st_lpips_weights
from ..nets import create_discriminator, create_generator, generator_spec
from ..precision import cpu_has_amx
from .base import PAIRED, Losses, Recipe, adam_optimizers, check_patchgan_fits, warn_below_generator_stride


@dataclass
class PerceptualOptions:
    """The ST-LPIPS perceptual loss a paired recipe can add to its generator's loss (off by default)."""

    lambda_perceptual: float = opt(
        0.0,
        "weight of the ST-LPIPS perceptual loss (weights from the stlpips-pytorch package); 0 = off",
        bounds=LOSS_WEIGHT,
    )
    perceptual_net: str = opt("vgg", "ST-LPIPS backbone of the perceptual loss", choices=NETS)
    perceptual_weights: str = opt(
        "", "ST-LPIPS weights file for the perceptual loss; empty = the installed stlpips-pytorch package's"
    )


@dataclass
class Pix2PixConfig(PerceptualOptions):
    """pix2pix's losses."""

    gan_loss: str = opt("vanilla", "adversarial loss", choices=GAN_LOSSES)
    lambda_l1: float = opt(100.0, "weight of the L1 reconstruction loss", bounds=LOSS_WEIGHT)
    lambda_gp: float = opt(10.0, "weight of the WGAN-GP gradient penalty (wgangp only)", bounds=LOSS_WEIGHT)
    gan_start: float = opt(
        0.0,
        "fraction of the run's steps that train the generator on its reconstruction losses alone (L1, and ST-LPIPS "
        "when on) before the discriminator and the adversarial loss start, as ESRGAN starts from a PSNR-trained "
        "model; those steps skip the discriminator; 0 = adversarial from the first step, 1 = never",
        bounds=Bounds(0, 1),
    )


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
        # Channels-last weights and images on CPUs with AMX: a pix2pix-plus step at 256 px ran 1.55x faster at batch 4
        # and 1.2x at batch 1 (64 px: no change) on a 2-core Xeon. Weights too, since a one-channel image is
        # contiguous in both layouts and would leave the convolutions NCHW. On AMD Zen 4 (AVX-512 bf16, no AMX) a
        # channels-last pix2pix step was slower (0.30 against 0.27 s, BENCHMARKS.md), so other CPUs keep NCHW.
        # Generators whose reflection pads and instance norms run slower channels-last opt out (pix2pixHD's).
        self.run_channels_last(cpu_has_amx() and getattr(type(self.networks["generator"]), "CPU_CHANNELS_LAST", True))
        for net in self.networks.values():
            net.to(memory_format=self.memory_format)
        self.calls = dict(self.networks)
        self.optimizers = adam_optimizers(self.networks, config.train, discriminators=["discriminator"])
        self.adversarial = AdversarialLoss(self.options.gan_loss)
        # pix2pix halves D's loss (vanilla, LSGAN); hinge and WGAN-GP use the plain sum, so lambda_gp means what the paper says.
        self.d_scale = 0.5 if self.options.gan_loss in ("vanilla", "lsgan") else 1.0
        o = self.options
        self.lambda_perceptual = o.lambda_perceptual if isinstance(o, PerceptualOptions) else 0.0
        # A loss, not a network of the method: frozen, never optimised, not saved in checkpoints.
        self.perceptual = (
            STLPIPSLoss(o.perceptual_net, o.perceptual_weights).to(device) if self.lambda_perceptual > 0 else None
        )

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Paired layouts only; the ST-LPIPS weights at hand when the perceptual loss is on."""
        if config.data.layout == "cyclegan":
            raise ConfigError(
                f"--layout cyclegan holds unpaired domains; --recipe {cls.name} trains on pairs (use --recipe cyclegan)"
            )
        o = config.method
        if isinstance(o, PerceptualOptions) and o.lambda_perceptual > 0:
            st_lpips_weights(o.perceptual_net, o.perceptual_weights, "--perceptual-weights")

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

    def add_perceptual(
        self, loss: torch.Tensor, losses: Losses, fake_b: torch.Tensor, real_b: torch.Tensor
    ) -> torch.Tensor:
        """loss + lambda_perceptual x ST-LPIPS(fake_b, real_b), logged unweighted as G_ST_LPIPS (when the loss is on)."""
        if self.perceptual is None:
            return loss
        value = self.perceptual(fake_b, real_b)
        losses["G_ST_LPIPS"] = value.detach()
        return loss + self.lambda_perceptual * value

    def train_step(self, batch: dict[str, Any]) -> Losses:
        """One D update, then one G update, over the run's micro-batches.

        With one micro-batch G runs once and its output keeps its graph for G's update; with several, G's
        activations are not kept across micro-batches: it runs again in G's update, with the same random draws."""
        micro = self.micro_batches(batch, ("A", "B"))
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
        self.adversarial_now = True

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Paired data and one discriminator scale: more is pix2pixHD's; a reconstruction loss for --gan-start."""
        super().check_config(config)
        if config.discriminator.num_d > 1:
            raise ConfigError("--num-d > 1 is pix2pixHD's multi-scale discriminator: use --recipe pix2pixhd")
        o = config.method
        if o.gan_start > 0 and o.lambda_l1 == 0 and o.lambda_perceptual == 0:
            raise ConfigError(
                "--gan-start trains on the reconstruction losses first, and both are off: set --lambda-l1 or "
                "--lambda-perceptual above 0, or --gan-start 0"
            )

    def before_step(self, step: int, total: int) -> None:
        """Steps before --gan-start x total train the generator alone (also decided again after a resume)."""
        self.adversarial_now = step >= int(self.options.gan_start * total)

    def train_step(self, batch: dict[str, Any]) -> Losses:
        """pix2pix's D-then-G step; before --gan-start, a generator update on the reconstruction losses alone."""
        if self.adversarial_now:
            return super().train_step(batch)
        micro = self.micro_batches(batch, ("A", "B"))
        g = self.calls["generator"]

        def loss(i: int, first: bool) -> tuple[torch.Tensor, Losses]:
            with self.updater.draws(i):
                fake_b = g(micro[i]["A"])
            losses: Losses = {}
            return self.reconstruction_loss(fake_b, micro[i]["B"], losses), losses

        return self.updater.update(self.optimizers["generator"], [g], len(micro), loss)

    def reconstruction_loss(self, fake_b: torch.Tensor, real_b: torch.Tensor, losses: Losses) -> torch.Tensor:
        """lambda_l1 x L1 (+ lambda_perceptual x ST-LPIPS), its parts logged into `losses`."""
        loss_l1 = l1_loss(fake_b, real_b)
        losses["G_L1"] = loss_l1.detach()
        return self.add_perceptual(self.lambda_l1 * loss_l1, losses, fake_b, real_b)

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
        """Fool D and stay close to the target in L1 (and in ST-LPIPS with --lambda-perceptual)."""
        loss_g_gan = self.adversarial(d(torch.cat([real_a, fake_b], 1)), True, for_discriminator=False)
        losses = {"G_GAN": loss_g_gan.detach()}
        return loss_g_gan + self.reconstruction_loss(fake_b, real_b, losses), losses
