"""pix2pixHD: coarse-to-fine generator, multi-scale discriminators, LSGAN + feature matching (+ VGG) losses.

Staged schedule (as pix2pixHD): stage 1 trains `--arch hd --n-local 0` (the global generator alone) at half
resolution; stage 2 builds `--n-local 1`, loads stage 1's global generator with `--init-global RUN`, trains
only the local enhancer for `--fix-global-steps` steps, then everything jointly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..checkpoint import load_weights, read_checkpoint_config, resolve_checkpoint, weights_file
from ..config import GAN_LOSSES, LOSS_WEIGHT, GeneratorConfig, RunConfig, opt, within
from ..errors import ConfigError
from ..losses import PerceptualLoss, feature_matching_loss, l1_loss, multiscale_adversarial
from ..nets import HDGenerator, MultiscaleDiscriminator, create_generator
from .base import Losses
from .pix2pix import ConditionalGANRecipe, PerceptualOptions


@dataclass
class Pix2PixHDConfig(PerceptualOptions):
    """pix2pixHD's losses and staged schedule (ST-LPIPS: an alternative to the VGG19 loss that needs no file)."""

    gan_loss: str = opt("lsgan", "adversarial loss", choices=GAN_LOSSES)
    lambda_l1: float = opt(0.0, "weight of the L1 reconstruction loss", bounds=LOSS_WEIGHT)
    lambda_feat: float = opt(10.0, "weight of the discriminator feature-matching loss", bounds=LOSS_WEIGHT)
    lambda_vgg: float = opt(
        0.0, "weight of the VGG19 perceptual loss (needs --vgg-weights); 0 = off", bounds=LOSS_WEIGHT
    )
    vgg_weights: str = opt("", "local torchvision vgg19-*.pth for the perceptual loss (never downloaded)")
    init_global: str = opt("", "stage 2: run or checkpoint whose global generator initialises this one")
    fix_global_steps: int = opt(
        0, "keep the global generator frozen for this many steps (train the enhancer)", bounds=within(0)
    )


class Pix2PixHDRecipe(ConditionalGANRecipe):
    """One D update (all scales) and one G update (GAN + lambda_feat * FM [+ lambda_vgg * VGG] [+ lambda_l1 * L1])."""

    name = "pix2pixhd"
    help = "pix2pixHD (paired): coarse-to-fine generator, multi-scale discriminators, LSGAN + feature matching"
    section = Pix2PixHDConfig
    discriminator_kind = "multiscale_patchgan"
    defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "generator": {"arch": "hd", "ngf": 32, "norm": "instance"},
        "discriminator": {"num_d": 2, "norm": "instance"},
    }

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        super().__init__(config, device)
        o = self.options
        self.lambda_feat, self.lambda_vgg, self.lambda_l1 = o.lambda_feat, o.lambda_vgg, o.lambda_l1
        self.perceptual = PerceptualLoss(o.vgg_weights).to(device) if o.lambda_vgg > 0 else None
        self.fix_global_steps = o.fix_global_steps if config.generator.n_local else 0
        self.partly_frozen = frozenset({"generator"}) if self.fix_global_steps > 0 else frozenset()

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Paired data, the hd generator, and the VGG weights when the perceptual loss is on."""
        super().check_config(config)
        if config.generator.arch != "hd":
            raise ConfigError("--recipe pix2pixhd needs --arch hd")
        if config.method.lambda_vgg > 0 and not config.method.vgg_weights:
            raise ConfigError(
                "--lambda-vgg needs --vgg-weights FILE (torchvision's vgg19-*.pth); nothing is downloaded"
            )

    def build_discriminator(self, config: RunConfig) -> nn.Module:
        """Conditional PatchGANs on an image pyramid (pix2pixHD's, also with one scale)."""
        g, d = config.generator, config.discriminator
        return MultiscaleDiscriminator(
            g.in_channels + g.out_channels, d.num_d, d.ndf, d.n_layers, d.norm, d.spectral_norm
        )

    def initialise(self) -> None:
        """Stage 2: the global generator from --init-global's run."""
        if self.options.init_global:
            self._load_global(Path(self.options.init_global), self.config.generator)

    def _load_global(self, source: Path, own: GeneratorConfig) -> None:
        """Initialise the global generator from a stage-1 run (or any hd checkpoint with the same global part)."""
        folder = source.parent if source.suffix == ".safetensors" else resolve_checkpoint(source)
        stage1_cfg = read_checkpoint_config(folder)
        if stage1_cfg.generator.arch != "hd":
            raise ConfigError(f"--init-global {source}: not an hd generator checkpoint")
        stage1 = create_generator(stage1_cfg.generator)
        load_weights(stage1, folder / weights_file("generator"), "generator")
        generator = self.networks["generator"]
        assert isinstance(generator, HDGenerator)  # (check_config: --arch hd)
        try:
            generator.load_global(stage1.state_dict())
        except ValueError as exc:
            g = stage1_cfg.generator
            width = g.ngf * 2**g.n_local
            hint = f"stage 2 with --n-local {generator.n_local} needs --ngf {width // 2**generator.n_local}"
            # Name the settings that differ from stage 1 (the weights' names and shapes only hint at them).
            fields = ("norm", "n_down_global", "n_blocks_global", "in_channels", "out_channels")
            differ = [
                f"--{'g-norm' if f == 'norm' else f.replace('_', '-')} {getattr(g, f)}"
                for f in fields
                if getattr(g, f) != getattr(own, f)
            ]
            same = f" and stage 1's {', '.join(differ)}" if differ else " and the same global settings"
            raise ConfigError(f"--init-global {source}: {exc}; {hint}{same}") from None

    def before_step(self, step: int, total: int) -> None:
        """The global generator trains from step --fix-global-steps on (also after a resume)."""
        self.networks["generator"].global_generator.requires_grad_(step >= self.fix_global_steps)  # type: ignore[union-attr]

    def discriminator_loss(
        self, d: nn.Module, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor
    ) -> tuple[torch.Tensor, Losses]:
        """LSGAN (or the chosen loss) over all scales, real pairs up, generated pairs down."""
        pred_fake = d(torch.cat([real_a, fake_b], 1))
        pred_real = d(torch.cat([real_a, real_b], 1))
        loss_d_fake = multiscale_adversarial(self.adversarial, pred_fake, False)
        loss_d_real = multiscale_adversarial(self.adversarial, pred_real, True)
        loss = self.d_scale * (loss_d_fake + loss_d_real)
        return loss, {"D_real": loss_d_real.detach(), "D_fake": loss_d_fake.detach()}

    def generator_loss(
        self, d: nn.Module, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor
    ) -> tuple[torch.Tensor, Losses]:
        """GAN + lambda_feat x feature matching [+ lambda_vgg x VGG] [+ lambda_l1 x L1] [+ lambda_perceptual x ST-LPIPS]."""
        pred_fake = d(torch.cat([real_a, fake_b], 1))
        with torch.no_grad():  # real features from the same (updated) D as the fake ones, as pix2pixHD matches them
            pred_real = d(torch.cat([real_a, real_b], 1))
        loss_gan = multiscale_adversarial(self.adversarial, pred_fake, True, for_discriminator=False)
        loss_fm = feature_matching_loss(pred_fake, pred_real)
        loss_l1 = l1_loss(fake_b, real_b)
        loss_g = loss_gan + self.lambda_feat * loss_fm + self.lambda_l1 * loss_l1
        losses = {"G_GAN": loss_gan.detach(), "G_FM": loss_fm.detach()}
        if self.perceptual is not None:
            loss_vgg = self.perceptual(fake_b, real_b)
            loss_g = loss_g + self.lambda_vgg * loss_vgg
            losses["G_VGG"] = loss_vgg.detach()
        losses["G_L1"] = loss_l1.detach()
        return self.add_perceptual(loss_g, losses, fake_b, real_b), losses
