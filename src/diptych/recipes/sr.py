"""Super-resolution: `sr` (pixel loss only, the PSNR-oriented model), `esrgan` (fine-tunes it with perceptual and
relativistic average GAN losses against a VGG-style discriminator) and `realesrgan` (Real-ESRGAN: degraded inputs,
a U-Net discriminator with spectral norm).

Following BasicSR (XPixelGroup/BasicSR: models/sr_model.py, esrgan_model.py; Real-ESRGAN's realesrgan_model.py):
Adam 2e-4 with betas (0.9, 0.99) and a generator EMA of 0.999; each GAN step updates the generator through a frozen
discriminator first, then the discriminator on the (detached) output. The LR crop is set in LR pixels and the scale
is the generator's (its geometry), so the data and the network cannot disagree.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..checkpoint import open_generator
from ..config import LOSS_WEIGHT, MAX_SIDE, DataConfig, RunConfig, field_names, generator_families, opt, within
from ..data.degradations import DegradationConfig, unsharp_mask
from ..data.sr_pairs import SRCrop, open_hr_folder, open_lr_hr_folders
from ..errors import ConfigError, DataError
from ..losses import AdversarialLoss, SRPerceptualLoss, STLPIPSLoss, l1_loss, relativistic_average_loss
from ..metrics.lpips import st_lpips_weights
from ..nets import create_generator, generator_spec
from ..nets.sr_discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from .base import SR, Losses, Recipe, adam_optimizers, fill_channels
from .pix2pix import PerceptualOptions

DEGRADATIONS = ("bicubic", "realesrgan")
# Data options of the paired recipes that SR data has no use for, and what it does instead.
PAIRED_DATA_OPTIONS = {
    "layout": "it reads a folder of HR images, or --lr-dir LR images beside them",
    "preprocess": "its crops are --lr-crop LR pixels at a random place, --scale times that in HR",
    "load_size": "its crops are --lr-crop LR pixels at a random place, --scale times that in HR",
    "crop_size": "its crops are --lr-crop LR pixels, --scale times that in HR",
    "normalize": "values map to [-1, 1] by their sample type's range",
    "dicom_window": "values map to [-1, 1] by their sample type's range",
}
# The VGG-style discriminator halves its input five times; batch norm in training needs at least 2 x 2 values per
# channel at the last stage (a micro-batch may hold one image).
VGG_MIN_SIDE = 64


@dataclass
class SuperResolutionConfig:
    """Super-resolution data (LR crop, how LR inputs are made) and the pixel loss."""

    lr_crop: int = opt(
        32,
        "LR training crop side in pixels; the HR crop is --lr-crop x the generator's --scale",
        bounds=within(1, MAX_SIDE),
    )
    lr_dir: str = opt(
        "",
        "folder of LR images named like --data's HR images, each exactly 1/scale of its HR partner; empty = LR made "
        "from the HR images by --degradation",
    )
    degradation: str = opt(
        "bicubic",
        "how LR inputs are made from HR images: bicubic = MATLAB imresize (classical SR); realesrgan = Real-ESRGAN's "
        "second-order blur, resize, noise and JPEG (settings: --degradation-settings). Stored with the model; "
        "evaluate makes its LR inputs the same way",
        choices=DEGRADATIONS,
    )
    degradation_settings: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "--degradation realesrgan: settings overriding Real-ESRGAN's defaults, as JSON or a .json file, "
            'e.g. \'{"second": {"noise_range": [1, 10]}}\' (docs/super-resolution.md lists them); the run stores all '
            "of them"
        },
    )
    lambda_pixel: float = opt(1.0, "weight of the pixel L1 loss", bounds=LOSS_WEIGHT)


@dataclass
class SRGANConfig(PerceptualOptions, SuperResolutionConfig):
    """A GAN fine-tuning of an SR model: pixel + perceptual + adversarial losses. The perceptual loss works offline
    by default (ST-LPIPS VGG16 from the stlpips-pytorch wheel); the papers' VGG19 loss needs a local weights file."""

    lambda_pixel: float = opt(1e-2, "weight of the pixel L1 loss", bounds=LOSS_WEIGHT)
    lambda_perceptual: float = opt(
        1.0,
        "weight of the ST-LPIPS perceptual loss (VGG16, weights from the stlpips-pytorch package: works offline); "
        "0 = off",
        bounds=LOSS_WEIGHT,
    )
    lambda_vgg: float = opt(
        0.0,
        "weight of the papers' VGG19 perceptual loss (needs --vgg-weights; ESRGAN/Real-ESRGAN use 1 with "
        "--lambda-perceptual 0); 0 = off",
        bounds=LOSS_WEIGHT,
    )
    lambda_gan: float = opt(5e-3, "weight of the adversarial loss", bounds=LOSS_WEIGHT)
    vgg_weights: str = opt("", "local torchvision vgg19-*.pth for --lambda-vgg (never downloaded)")
    init_from: str = opt(
        "", "run or checkpoint (e.g. a --recipe sr run) whose generator weights start this one (its EMA if it has one)"
    )


@dataclass
class RealESRGANConfig(SRGANConfig):
    """Real-ESRGAN: degraded LR inputs, pixel + perceptual + GAN with a U-Net discriminator."""

    lr_crop: int = opt(
        64,
        "LR training crop side in pixels; the HR crop is --lr-crop x the generator's --scale",
        bounds=within(1, MAX_SIDE),
    )
    degradation: str = opt(
        "realesrgan",
        "how LR inputs are made from HR images: bicubic = MATLAB imresize (classical SR); realesrgan = Real-ESRGAN's "
        "second-order blur, resize, noise and JPEG (settings: --degradation-settings). Stored with the model; "
        "evaluate makes its LR inputs the same way",
        choices=DEGRADATIONS,
    )
    lambda_pixel: float = opt(1.0, "weight of the pixel L1 loss", bounds=LOSS_WEIGHT)
    lambda_gan: float = opt(0.1, "weight of the adversarial loss", bounds=LOSS_WEIGHT)
    sharpen_targets: bool = opt(
        True,
        "compare outputs with unsharp-masked HR targets in the pixel and perceptual losses (Real-ESRGAN's "
        "l1_gt_usm / percep_gt_usm; the discriminator sees the HR images as they are)",
    )
    sharpen_weight: float = opt(
        0.5, "--sharpen-targets: the share of the detail (HR - its Gaussian blur) added to the HR", bounds=within(0, 10)
    )
    sharpen_radius: int = opt(
        50,
        "--sharpen-targets: the Gaussian blur's kernel size in HR pixels (an even size is made odd: 50 -> 51, sigma 8)",
        bounds=within(1, 255),
    )
    sharpen_threshold: float = opt(
        10.0, "--sharpen-targets: 8-bit levels of detail below which the HR is left as it is", bounds=within(0, 255)
    )


@contextmanager
def denormals_flushed(device: torch.device) -> Iterator[None]:
    """On a CPU, denormal floats count as zero inside the block (then PyTorch's default again). The SR networks'
    small initialisation (ESRGAN's 0.1 weight scale, 0.2 residual scaling) makes denormal activations and gradients,
    and x86 arithmetic on them is slow: a 23-block RRDBNet x4 trained 4.6x faster with them flushed (0.181 against
    0.039 steps/s, batch 16 of 32 px LR crops, one thread)."""
    if device.type != "cpu" or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def degradation_of(config: RunConfig) -> DegradationConfig | None:
    """The Real-ESRGAN degradation a run's LR inputs are made with (None: MATLAB bicubic)."""
    o = config.method
    return DegradationConfig.from_json(o.degradation_settings) if o.degradation == "realesrgan" else None


def sr_crop(config: RunConfig) -> SRCrop:
    """The training crops: LR side --lr-crop, HR side that times the generator's scale; random flips and transposes
    (BasicSR's use_hflip / use_rot) unless --no-flip."""
    flip = config.data.flip  # (--no-flip: neither flips nor transposes)
    return SRCrop(config.generator.geometry().scale, config.method.lr_crop, flip=flip, rotate=flip)


class SRRecipe(Recipe):
    """One generator trained with the pixel L1 loss on LR/HR crops (the PSNR-oriented model)."""

    name = "sr"
    help = (
        "super-resolution, PSNR-oriented (pixel L1 only); LR made from HR images (bicubic or Real-ESRGAN degradation)"
    )
    data_kind = SR
    section: ClassVar[type] = SuperResolutionConfig
    monitor = "G_L1"
    upscales = True
    defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "generator": {"arch": "msrresnet"},
        "data": {"batch_size": 16},
        "train": {"lr": 2e-4, "beta1": 0.9, "beta2": 0.99, "ema": 0.999},
    }

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.networks = {"generator": create_generator(config.generator), **self.build_discriminators(config)}
        for net in self.networks.values():
            net.to(device)
        self.initialise_weights()  # (--init: the discriminators; the SR generators initialise themselves, as ESRGAN)
        self.calls = dict(self.networks)
        self.optimizers = adam_optimizers(self.networks, config.train, discriminators=["discriminator"])

    def build_discriminators(self, config: RunConfig) -> dict[str, nn.Module]:
        """The discriminators of the recipe (none: pixel loss only)."""
        return {}

    @classmethod
    def network_specs(cls, config: RunConfig) -> dict[str, dict[str, Any]]:
        """The generator's family fields."""
        return {"generator": generator_spec(config.generator)}

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """An upscaling generator, degradation settings only for realesrgan."""
        g, o, d = config.generator, config.method, config.data
        if "scale" not in field_names(type(g)):
            upscalers = [name for name, family in generator_families().items() if "scale" in field_names(family)]
            raise ConfigError(
                f"--recipe {cls.name} trains upscalers, but the {g.arch} generator has no --scale; "
                f"use --arch {' / '.join(upscalers) or '<an upscaling family>'}"
            )
        if d.label_nc or d.instance_dir:
            raise ConfigError(f"--label-nc and --instance-dir are for label maps; --recipe {cls.name} reads images")
        defaults = DataConfig()
        for name, instead in PAIRED_DATA_OPTIONS.items():
            if getattr(d, name) != getattr(defaults, name):
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} does not apply to --recipe {cls.name} ({instead}); drop it")
        if o.degradation_settings and o.degradation != "realesrgan":
            raise ConfigError("--degradation-settings applies to --degradation realesrgan only; drop it or switch")
        degradation_of(config)  # (refuses unknown or out-of-range settings, naming them)
        if d.direction != "AtoB":
            raise ConfigError(f"--direction BtoA: --recipe {cls.name} always maps LR (A) to HR (B)")

    @classmethod
    def open_dataset(cls, config: RunConfig, resume: bool) -> Any:
        """HR images with LR made on the fly, or LR/HR pairs (--lr-dir); crops checked against every image."""
        d, o = config.data, config.method
        if not d.root:
            raise DataError("no dataset given; pass the folder of HR images (--data DIR)")
        hr_dir = _phase_folder(Path(d.root), d.phase)
        crop = sr_crop(config)
        if o.lr_dir:
            return open_lr_hr_folders(
                _phase_folder(Path(o.lr_dir), d.phase), hr_dir, crop, skip_bad=d.skip_bad, max_items=d.max_items
            )
        return open_hr_folder(
            hr_dir,
            crop,
            degradation_of(config),
            skip_bad=d.skip_bad,
            max_items=d.max_items,
            nifti_axis=d.nifti_axis,
        )

    @classmethod
    def fill_from_data(cls, config: RunConfig, summary: Any) -> None:
        """Channels and sample type from the data (LR and HR have the same); every degradation setting stored."""
        fill_channels(config, summary.in_channels, summary.out_channels, str(summary.root))
        d = config.data
        d.sample_type = d.input_sample_type = summary.dtype
        degradation = degradation_of(config)
        if degradation is not None:  # the complete settings, so the checkpoint says how its inputs were made
            config.method.degradation_settings = json.loads(json.dumps(degradation.to_json()))  # (as JSON holds it)

    @classmethod
    def check_data(cls, config: RunConfig, summary: Any, warn: Callable[[str], None]) -> None:
        """Nothing beyond the crop checks the data layer made."""

    def example_inputs(self, side: int) -> dict[str, tuple[torch.Tensor, ...]]:
        """The generator sees an LR crop; discriminators the HR crop."""
        g = self.config.generator
        lr = torch.zeros(1, g.in_channels, side // g.geometry().scale, side // g.geometry().scale, device=self.device)
        hr = torch.zeros(1, g.out_channels, side, side, device=self.device)
        return {"generator": (lr,), **{name: (hr,) for name in self.networks if name != "generator"}}

    def train_step(self, batch: dict[str, Any]) -> Losses:
        """One optimisation step (the method's `step`), with denormal floats flushed to zero on CPUs."""
        with denormals_flushed(self.device):
            return self.step(batch)

    def step(self, batch: dict[str, Any]) -> Losses:
        """One generator update with lambda_pixel x L1."""
        micro = self.updater.split(batch, ("LR", "HR"))
        g = self.calls["generator"]

        def g_loss(i: int, first: bool) -> tuple[torch.Tensor, Losses]:
            loss = l1_loss(g(micro[i]["LR"]), micro[i]["HR"])
            return self.options.lambda_pixel * loss, {"G_L1": loss.detach()}

        return self.updater.update(self.optimizers["generator"], [g], len(micro), g_loss)


class SRGANRecipe(SRRecipe):
    """A generator (started from --init-from) and a discriminator: pixel + perceptual + GAN, G then D per step."""

    section: ClassVar[type] = SRGANConfig
    perceptual_layers: ClassVar[str] = "esrgan"

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        super().__init__(config, device)
        o = self.options
        self.vgg = SRPerceptualLoss(o.vgg_weights, self.perceptual_layers).to(device) if o.lambda_vgg > 0 else None
        self.perceptual = (
            STLPIPSLoss(o.perceptual_net, o.perceptual_weights).to(device) if o.lambda_perceptual > 0 else None
        )

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """SR checks, one discriminator scale, and the VGG weights when the perceptual loss is on."""
        super().check_config(config)
        if config.discriminator.num_d > 1:
            raise ConfigError(f"--num-d > 1 is pix2pixHD's multi-scale discriminator; --recipe {cls.name} uses one")
        if config.method.lambda_vgg > 0 and not config.method.vgg_weights:
            raise ConfigError(
                f"--lambda-vgg {config.method.lambda_vgg} needs --vgg-weights FILE (torchvision's vgg19-*.pth; "
                "nothing is downloaded), or pass --lambda-vgg 0 (the ST-LPIPS loss, --lambda-perceptual, needs no file)"
            )
        if config.method.lambda_perceptual > 0:
            st_lpips_weights(config.method.perceptual_net, config.method.perceptual_weights, "--perceptual-weights")

    @classmethod
    def network_specs(cls, config: RunConfig) -> dict[str, dict[str, Any]]:
        """The generator, and the discriminator with its input channels."""
        d = {"kind": cls.discriminator_kind(), "in_channels": config.generator.out_channels}
        return {**super().network_specs(config), "discriminator": {**d, **dataclasses.asdict(config.discriminator)}}

    @classmethod
    def discriminator_kind(cls) -> str:
        """The discriminator's name in the manifest."""
        raise NotImplementedError

    def initialise(self) -> None:
        """The generator's weights from --init-from's run (the same architecture)."""
        if self.options.init_from:
            load_generator_from(self.options.init_from, self.config, self.networks["generator"])

    def gan_losses(self, d: nn.Module, hr: torch.Tensor, fake: torch.Tensor, for_discriminator: bool) -> torch.Tensor:
        """The adversarial loss of a (micro-)batch, for the discriminator (fake detached) or the generator."""
        raise NotImplementedError

    def content_target(self, hr: torch.Tensor) -> torch.Tensor:
        """What the pixel and perceptual losses compare the output with (the HR crop itself)."""
        return hr

    def step(self, batch: dict[str, Any]) -> Losses:
        """One generator update through the frozen discriminator, then one discriminator update.

        With one micro-batch the generator runs once and its output is reused (detached) by D's update; with
        several, D's update runs it again without gradients."""
        micro = self.updater.split(batch, ("LR", "HR"))
        n = len(micro)
        g, d = self.calls["generator"], self.calls["discriminator"]
        d_bare = self.networks["discriminator"]
        o = self.options
        fakes: list[torch.Tensor] = []

        targets = [self.content_target(m["HR"]) for m in micro]

        def g_loss(i: int, first: bool) -> tuple[torch.Tensor, Losses]:
            del fakes[i:]
            lr, hr = micro[i]["LR"], micro[i]["HR"]
            fake = g(lr)
            fakes.append(fake.detach())
            pixel = l1_loss(fake, targets[i])
            gan = self.gan_losses(d_bare, hr, fake, for_discriminator=False)
            loss = o.lambda_pixel * pixel + o.lambda_gan * gan
            parts = {"G_L1": pixel.detach(), "G_GAN": gan.detach()}
            if self.vgg is not None:
                vgg = self.vgg(fake, targets[i])
                loss = loss + o.lambda_vgg * vgg
                parts["G_VGG"] = vgg.detach()
            if self.perceptual is not None:
                perceptual = self.perceptual(fake, targets[i])
                loss = loss + o.lambda_perceptual * perceptual
                parts["G_ST_LPIPS"] = perceptual.detach()
            return loss, parts

        def d_loss(i: int, first: bool) -> tuple[torch.Tensor, Losses]:
            if i < len(fakes) and n == 1:
                fake = fakes[i]
            else:
                with torch.no_grad():
                    fake = g(micro[i]["LR"])
            loss = self.gan_losses(d, micro[i]["HR"], fake, for_discriminator=True)
            return loss, {"D": loss.detach()}

        d_bare.requires_grad_(False)
        losses = self.updater.update(self.optimizers["generator"], [g], n, g_loss)
        d_bare.requires_grad_(True)
        losses.update(self.updater.update(self.optimizers["discriminator"], [d], n, d_loss))
        return losses


class ESRGANRecipe(SRGANRecipe):
    """ESRGAN: pixel (1e-2) + perceptual at conv5_4 (1) + relativistic average GAN (5e-3), VGG-style D."""

    name = "esrgan"
    help = (
        "ESRGAN: fine-tunes an sr run (--init-from) with pixel + perceptual (ST-LPIPS VGG16 by default, VGG19 with "
        "--lambda-vgg) + relativistic average GAN "
        "against a VGG-style discriminator"
    )
    defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "generator": {"arch": "rrdbnet"},
        "data": {"batch_size": 16},
        "train": {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "ema": 0.999},
    }

    @classmethod
    def discriminator_kind(cls) -> str:
        """ESRGAN's VGG-style classifier."""
        return "vgg_style"

    @classmethod
    def check_data(cls, config: RunConfig, summary: Any, warn: Callable[[str], None]) -> None:
        """HR crops large enough for the VGG-style discriminator's five halvings."""
        if summary.min_side < VGG_MIN_SIDE:
            crop = sr_crop(config)
            raise ConfigError(
                f"--lr-crop {crop.lr_crop} x scale {crop.scale} = {crop.hr_crop} px HR crops are too small for the "
                f"VGG-style discriminator (at least {VGG_MIN_SIDE}); use a larger --lr-crop"
            )

    def build_discriminators(self, config: RunConfig) -> dict[str, nn.Module]:
        """The VGG-style discriminator on HR images."""
        d = config.discriminator
        return {"discriminator": VGGStyleDiscriminator(config.generator.out_channels, d.ndf, d.spectral_norm)}

    def gan_losses(self, d: nn.Module, hr: torch.Tensor, fake: torch.Tensor, for_discriminator: bool) -> torch.Tensor:
        """Relativistic average GAN; the generator's side sees D's logits of the real images as constants."""
        if for_discriminator:
            return relativistic_average_loss(d(hr), d(fake), for_discriminator=True)
        with torch.no_grad():
            real = d(hr)
        return relativistic_average_loss(real, d(fake), for_discriminator=False)


class RealESRGANRecipe(SRGANRecipe):
    """Real-ESRGAN: degraded inputs; pixel (1) + perceptual at five layers (1) + GAN (0.1), U-Net D with SN."""

    name = "realesrgan"
    help = (
        "Real-ESRGAN: blind SR from degraded inputs; pixel + perceptual (ST-LPIPS VGG16 by default, VGG19 with "
        "--lambda-vgg) + GAN against a U-Net "
        "discriminator with spectral norm"
    )
    section: ClassVar[type] = RealESRGANConfig
    perceptual_layers: ClassVar[str] = "realesrgan"
    defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "generator": {"arch": "rrdbnet"},
        "data": {"batch_size": 12},
        "train": {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "ema": 0.999},
    }

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.adversarial = AdversarialLoss("vanilla")

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """The GAN recipes' checks; the sharpening's settings only with --sharpen-targets."""
        super().check_config(config)
        o, defaults = config.method, RealESRGANConfig()
        if not o.sharpen_targets:
            for name in ("sharpen_weight", "sharpen_radius", "sharpen_threshold"):
                if getattr(o, name) != getattr(defaults, name):
                    flag = name.replace("_", "-")
                    raise ConfigError(f"--{flag} applies to --sharpen-targets; drop it or drop --no-sharpen-targets")

    def content_target(self, hr: torch.Tensor) -> torch.Tensor:
        """The HR crop unsharp-masked (Real-ESRGAN's sharpened targets) with --sharpen-targets, else as it is."""
        o = self.options
        if not o.sharpen_targets:
            return hr
        return unsharp_mask((hr + 1) / 2, o.sharpen_weight, o.sharpen_radius, o.sharpen_threshold) * 2 - 1

    @classmethod
    def discriminator_kind(cls) -> str:
        """Real-ESRGAN's U-Net discriminator."""
        return "unet_sn"

    def build_discriminators(self, config: RunConfig) -> dict[str, nn.Module]:
        """The U-Net discriminator (always spectrally normalised) on HR images."""
        return {"discriminator": UNetDiscriminatorSN(config.generator.out_channels, config.discriminator.ndf)}

    def gan_losses(self, d: nn.Module, hr: torch.Tensor, fake: torch.Tensor, for_discriminator: bool) -> torch.Tensor:
        """Per-pixel vanilla GAN: D's real logits up and fake down (summed, as Real-ESRGAN); G's fakes up."""
        if for_discriminator:
            return self.adversarial(d(hr), True) + self.adversarial(d(fake), False)
        return self.adversarial(d(fake), True, for_discriminator=False)


def load_generator_from(source: str, config: RunConfig, generator: nn.Module) -> None:
    """Copy the generator weights of another run (its moving average where it has one) into `generator`, refusing
    another architecture in one line."""
    other, view, _, kind = open_generator(source)
    theirs, ours = generator_spec(view.generator), generator_spec(config.generator)
    if theirs != ours:
        differ = [
            f"{k} {theirs.get(k)} (this run: {ours.get(k)})"
            for k in sorted(set(theirs) | set(ours))
            if theirs.get(k) != ours.get(k)
        ]
        raise ConfigError(
            f"--init-from {source}: its generator differs from this run's: {', '.join(differ)}; "
            "give this run the same generator options"
        )
    generator.load_state_dict(other.state_dict())
    print(f"diptych: generator initialised from {source} ({kind} weights)", file=sys.stderr)


def _phase_folder(root: Path, phase: str) -> Path:
    """root/phase when it exists (a dataset with train/test splits), else root."""
    return root / phase if phase and (root / phase).is_dir() else root
