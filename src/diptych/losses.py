"""Adversarial losses (vanilla, LSGAN, hinge, WGAN-GP with its gradient penalty), reconstruction losses, and the
perceptual losses (VGG19 features; ST-LPIPS)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .metrics.lpips import as_rgb, at_least_min_side, load_st_lpips
from .nets.vgg import vgg_features
from .weights import load_state_dict_file


class AdversarialLoss(nn.Module):
    """GAN objective on discriminator logits; the discriminator and generator sides differ for hinge."""

    def __init__(self, mode: str = "vanilla") -> None:
        super().__init__()
        if mode not in ("vanilla", "lsgan", "hinge", "wgangp"):
            raise ValueError(f"unknown GAN loss {mode!r}")
        self.mode = mode

    def forward(self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        logits = logits.float()
        if self.mode == "vanilla":
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            return F.binary_cross_entropy_with_logits(logits, target)
        if self.mode == "lsgan":
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            return F.mse_loss(logits, target)
        if self.mode == "hinge" and for_discriminator:
            return F.relu(1.0 - logits).mean() if target_is_real else F.relu(1.0 + logits).mean()
        # WGAN critic (both sides) and the hinge generator: maximise the score of what should look real.
        return -logits.mean() if target_is_real else logits.mean()


def relativistic_average_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, for_discriminator: bool
) -> torch.Tensor:
    """ESRGAN's relativistic average GAN loss (Jolicoeur-Martineau 2018): D learns that real images are more
    realistic than the average fake, and fakes less than the average real,
    L_D = (BCE(C(x_r) - E[C(x_f)], 1) + BCE(C(x_f) - E[C(x_r)], 0)) / 2; the generator's loss swaps the targets.
    As BasicSR's ESRGAN, the discriminator's loss treats each average as a constant (the other term's), and the
    generator's keeps the gradient through the fakes' average; pass detached fakes to the discriminator's."""
    real, fake = real_logits.float(), fake_logits.float()
    real_mean = real.mean().detach()
    fake_mean = fake.mean().detach() if for_discriminator else fake.mean()
    real_vs_fake = real - fake_mean
    fake_vs_real = fake - real_mean
    real_target = torch.ones_like(real) if for_discriminator else torch.zeros_like(real)
    fake_target = torch.zeros_like(fake) if for_discriminator else torch.ones_like(fake)
    bce = F.binary_cross_entropy_with_logits
    return 0.5 * (bce(real_vs_fake, real_target) + bce(fake_vs_real, fake_target))


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad critic(x_hat)||_2 - 1)^2] on random per-sample interpolates of real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype, generator=generator)
    interp = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(interp)
    (grads,) = torch.autograd.grad(scores.sum(), interp, create_graph=True)
    norms = grads.flatten(1).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, computed in float32."""
    return F.l1_loss(output.float(), target.float())


def multiscale_adversarial(
    loss: AdversarialLoss, outputs: list[list[torch.Tensor]], target_is_real: bool, for_discriminator: bool = True
) -> torch.Tensor:
    """An adversarial loss summed over the scales of a multi-scale discriminator (its last output per scale)."""
    return torch.stack([loss(scale[-1], target_is_real, for_discriminator) for scale in outputs]).sum()


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD's discriminator feature matching: L1 between the intermediate features D computes for the
    generated and the real pair, averaged over scales and weighted 4 / (number of feature layers) per layer."""
    total = torch.zeros((), device=fake[0][0].device)
    for f_scale, r_scale in zip(fake, real, strict=True):
        layers = len(f_scale) - 1  # the last output is the logits, not a feature
        for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
            total = total + (4.0 / layers / len(fake)) * F.l1_loss(f.float(), r.detach().float())
    return total


class PerceptualLoss(nn.Module):
    """VGG19 feature L1 at relu1_1 .. relu5_1 (weights 1/32 .. 1, as pix2pixHD) on ImageNet-normalised inputs.

    The VGG19 weights come from a local file in torchvision's layout (vgg19-*.pth, keys `features.N.*`);
    they are frozen. Inputs are [-1, 1] images with 1 or 3 channels (grey is repeated).
    """

    TAPS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19.features
    WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self, weights: str | Path | None = None, features: nn.Sequential | None = None) -> None:
        super().__init__()
        if features is None:
            features = load_vgg19_features(weights)
        self.features = features[: self.TAPS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x.float() + 1) / 2
        x = x[:, :1].expand(-1, 3, -1, -1) if x.shape[1] < 3 else x[:, :3]
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.TAPS:
                out.append(x)
        return out

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), device=output.device)
        for w, fo, ft in zip(self.WEIGHTS, self._taps(output), self._taps(target), strict=True):
            total = total + w * F.l1_loss(fo, ft.detach())
        return total


class SRPerceptualLoss(PerceptualLoss):
    """The super-resolution GANs' VGG19 perceptual loss: L1 between features before their ReLU, at conv5_4 alone
    (ESRGAN) or at conv1_2, conv2_2, conv3_4, conv4_4 and conv5_4 weighted 0.1, 0.1, 1, 1, 1 (Real-ESRGAN)."""

    LAYERS: ClassVar[dict[str, tuple[tuple[int, ...], tuple[float, ...]]]] = {
        "esrgan": ((34,), (1.0,)),
        "realesrgan": ((2, 7, 16, 25, 34), (0.1, 0.1, 1.0, 1.0, 1.0)),
    }

    def __init__(self, weights: str | Path | None, layers: str, features: nn.Sequential | None = None) -> None:
        self.TAPS, self.WEIGHTS = self.LAYERS[layers]
        super().__init__(weights, features)


def load_vgg19_features(weights: str | Path | None) -> nn.Sequential:
    """VGG19 convolutional features with weights from a local torchvision-layout file; a clear error without one."""
    if weights is None:
        raise ConfigError(
            "the perceptual loss needs VGG19 weights: pass --vgg-weights FILE (torchvision's vgg19-*.pth, "
            "keys features.N.weight/bias); diptych never downloads weights"
        )
    features = vgg_features("vgg19")
    state = {
        k.removeprefix("features."): v
        for k, v in load_state_dict_file(Path(weights), "VGG19").items()
        if k.startswith("features.")
    }
    try:
        missing, unexpected = features.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ConfigError(
            f"{weights}: not VGG19 weights in torchvision's layout ({str(exc).splitlines()[-1].strip()})"
        ) from None
    if missing or unexpected:
        raise ConfigError(f"{weights}: not VGG19 weights in torchvision's layout (missing {missing[:3]})")
    return features


class STLPIPSLoss(nn.Module):
    """ST-LPIPS (shift-tolerant LPIPS, Ghildyal & Liu 2022) between generated and target batches in [-1, 1], averaged
    over the batch. The network is frozen and in eval mode; its weights come from the installed stlpips-pytorch
    package or a file (`net`: "vgg" or "alex"). Grey images are repeated to RGB, extra channels dropped."""

    def __init__(self, net: str = "vgg", weights: str | Path | None = None) -> None:
        super().__init__()
        self.model = load_st_lpips(net, weights or None, flag="--perceptual-weights")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = at_least_min_side(as_rgb(output.float()), as_rgb(target.detach().float()))
        return self.model(x, y).mean()
