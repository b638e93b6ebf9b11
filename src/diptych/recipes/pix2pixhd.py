"""pix2pixHD: coarse-to-fine generator, multi-scale discriminators, LSGAN + feature matching (+ VGG) losses.

Staged schedule (as pix2pixHD): stage 1 trains `--arch hd --n-local 0` (the global generator alone) at half
resolution; stage 2 builds `--n-local 1`, loads stage 1's global generator with `--init-global RUN`, trains
only the local enhancer for `--fix-global-steps` steps, then everything jointly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_weights, read_checkpoint_config, resolve_checkpoint, weights_file
from ..config import GeneratorConfig, RunConfig
from ..errors import ConfigError
from ..losses import AdversarialLoss, PerceptualLoss, feature_matching_loss, l1_loss, multiscale_adversarial
from ..nets import HDGenerator, MultiscaleDiscriminator, create_generator, init_weights
from ..precision import AmpStep, resolve_precision
from .base import GANRecipe, Losses, adam_optimizers


class Pix2PixHDRecipe(GANRecipe):
    """One D update (all scales) and one G update (GAN + lambda_feat * FM [+ lambda_vgg * VGG] [+ lambda_l1 * L1])."""

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        g_cfg, d_cfg, t = config.generator, config.discriminator, config.train
        generator = create_generator(g_cfg)
        if not isinstance(generator, HDGenerator):
            raise ConfigError("--recipe pix2pixhd needs --arch hd")
        self.generator = generator.to(device)
        in_ch = g_cfg.in_channels + g_cfg.out_channels
        self.discriminator = MultiscaleDiscriminator(in_ch, d_cfg.num_d, d_cfg.ndf, d_cfg.n_layers, d_cfg.norm).to(
            device
        )
        init_weights(self.generator, t.init, t.init_gain)
        init_weights(self.discriminator, t.init, t.init_gain)
        if t.init_global:
            self._load_global(Path(t.init_global), g_cfg)
        self.networks = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers = adam_optimizers(self.networks, t)
        self.adversarial = AdversarialLoss(t.gan_loss)
        self.d_scale = 0.5 if t.gan_loss in ("vanilla", "lsgan") else 1.0
        self.lambda_feat, self.lambda_vgg, self.lambda_l1 = t.lambda_feat, t.lambda_vgg, t.lambda_l1
        self.perceptual = PerceptualLoss(t.vgg_weights).to(device) if t.lambda_vgg > 0 else None
        self.fix_global_steps = t.fix_global_steps if g_cfg.n_local else 0
        self.generator_partly_frozen = self.fix_global_steps > 0
        self.accum_steps = t.accum_steps
        self.amp = AmpStep(resolve_precision(t.precision, device, config.data.sample_type), device)
        self.monitor = "G_L1"
        self.device = device
        self.step = 0

    def _load_global(self, source: Path, own: GeneratorConfig) -> None:
        """Initialise the global generator from a stage-1 run (or any hd checkpoint with the same global part)."""
        folder = source.parent if source.suffix == ".safetensors" else resolve_checkpoint(source)
        stage1_cfg = read_checkpoint_config(folder)
        if stage1_cfg.generator.arch != "hd":
            raise ConfigError(f"--init-global {source}: not an hd generator checkpoint")
        stage1 = create_generator(stage1_cfg.generator)
        load_weights(stage1, folder / weights_file("generator"))
        try:
            self.generator.load_global(stage1.state_dict())
        except ValueError as exc:
            g = stage1_cfg.generator
            width = g.ngf * 2**g.n_local
            hint = f"stage 2 with --n-local {self.generator.n_local} needs --ngf {width // 2**self.generator.n_local}"
            # Name the settings that differ from stage 1 (the weights' names and shapes only hint at them).
            fields = ("norm", "n_down_global", "n_blocks_global", "in_channels", "out_channels")
            differ = [
                f"--{'g-norm' if f == 'norm' else f.replace('_', '-')} {getattr(g, f)}"
                for f in fields
                if getattr(g, f) != getattr(own, f)
            ]
            same = f" and stage 1's {', '.join(differ)}" if differ else " and the same global settings"
            raise ConfigError(f"--init-global {source}: {exc}; {hint}{same}") from None

    def set_step(self, step: int) -> None:
        """Told by the trainer before each step (drives the frozen-global phase, also after a resume)."""
        self.step = step
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
        """GAN + lambda_feat x feature matching [+ lambda_vgg x VGG] [+ lambda_l1 x L1]."""
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
        return loss_g, losses
