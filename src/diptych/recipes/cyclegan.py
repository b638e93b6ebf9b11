"""CycleGAN (Zhu et al. 2017): two generators learn A -> B and B -> A from unpaired images, held together by cycle
consistency; an unconditional PatchGAN per domain judges that domain's real and generated images.

Following the reference (junyanz/pytorch-CycleGAN-and-pix2pix, models/cycle_gan_model.py): G_A maps A -> B and G_B
maps B -> A; D_A judges B-domain images (real B against G_A's fakes) and D_B A-domain images; each discriminator sees
fakes through an ImagePool of 50; losses are LSGAN + lambda_A x |G_B(G_A(a)) - a| + lambda_B x |G_A(G_B(b)) - b|
+ identity (|G_A(b) - b| x lambda_B + |G_B(a) - a| x lambda_A) x lambda_identity; G (both) updates first, then D
(both), with D's loss halved.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import GAN_LOSSES, LOSS_WEIGHT, RunConfig, opt, within
from ..data.unpaired import open_unpaired_dataset
from ..errors import CheckpointError, ConfigError
from ..losses import AdversarialLoss, l1_loss
from ..nets import create_discriminator, create_generator, generator_spec
from .base import UNPAIRED, Losses, Recipe, adam, check_patchgan_fits, fill_channels, warn_below_generator_stride
from .pool import POOL_SIZE, ImagePool


@dataclass
class CycleGANConfig:
    """CycleGAN's losses, image pools and pairing of the unpaired domains."""

    gan_loss: str = opt("lsgan", "adversarial loss", choices=GAN_LOSSES)
    lambda_a: float = opt(10.0, "weight of the cycle loss A -> B -> A (the reference's --lambda_A)", bounds=LOSS_WEIGHT)
    lambda_b: float = opt(10.0, "weight of the cycle loss B -> A -> B (the reference's --lambda_B)", bounds=LOSS_WEIGHT)
    lambda_identity: float = opt(
        0.5,
        "identity loss weight, relative to lambda_a/lambda_b: G_A(b) should stay b, G_B(a) stay a (needs the same "
        "channels in both domains); 0 = off",
        bounds=LOSS_WEIGHT,
    )
    pool_size: int = opt(
        # The pool holds its fakes in memory (a 256x256 RGB fake is 0.75 MiB in fp32); 1000 is 20x the paper's.
        POOL_SIZE,
        "earlier fakes each discriminator also sees (0 = only the latest)",
        bounds=within(0, 1000),
    )
    serial_batches: bool = opt(
        False, "pair A's i-th image with B's (i mod len(B))-th, as the reference's --serial_batches (default: B drawn)"
    )


def swapped(config: RunConfig) -> Any:
    """The generator config of the way back (B -> A): input and output channels exchanged."""
    back = copy.copy(config.generator)
    back.in_channels, back.out_channels = config.generator.out_channels, config.generator.in_channels
    return back


def cycle_losses(
    real_a: torch.Tensor, rec_a: torch.Tensor, real_b: torch.Tensor, rec_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cycle consistency: L1 of each domain's reconstruction after the round trip (unweighted)."""
    return l1_loss(rec_a, real_a), l1_loss(rec_b, real_b)


class CycleGANRecipe(Recipe):
    """Two generators and two unconditional discriminators; one G update (both generators) then one D update."""

    name = "cyclegan"
    help = "CycleGAN (unpaired): two ResNet generators A <-> B, a PatchGAN per domain, LSGAN + cycle + identity"
    data_kind = UNPAIRED
    section = CycleGANConfig
    monitor = "cycle_A"
    defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "generator": {"arch": "resnet", "n_blocks": 9, "norm": "instance", "dropout": 0.0},
        "discriminator": {"norm": "instance"},
    }

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        super().__init__(config, device)
        g, d = config.generator, config.discriminator
        self.networks = {
            "G_A": create_generator(g),
            "G_B": create_generator(swapped(config)),
            "D_A": create_discriminator(d, g.out_channels),
            "D_B": create_discriminator(d, g.in_channels),
        }
        for net in self.networks.values():
            net.to(device)
        self.initialise_weights()
        self.calls = dict(self.networks)
        t, n = config.train, self.networks
        betas = (t.beta1, t.beta2)
        self.optimizers = {
            "G": adam(itertools.chain(n["G_A"].parameters(), n["G_B"].parameters()), t.lr, betas),
            "D": adam(itertools.chain(n["D_A"].parameters(), n["D_B"].parameters()), t.discriminator_lr, betas),
        }
        self.adversarial = AdversarialLoss(self.options.gan_loss)
        # Its training instance norm keeps the channels-last layout (nets/layers.py), so every generator family runs it.
        self.run_channels_last()
        # fake_b_pool feeds D_A (B-domain images), fake_a_pool D_B.
        self.pools = {"fake_A": ImagePool(self.options.pool_size), "fake_B": ImagePool(self.options.pool_size)}

    @classmethod
    def generators(cls, config: RunConfig) -> dict[str, str]:
        """G_A translates A -> B, G_B B -> A."""
        return {"AtoB": "G_A", "BtoA": "G_B"}

    @classmethod
    def network_specs(cls, config: RunConfig) -> dict[str, dict[str, Any]]:
        """Both generators; each discriminator with the domain it judges."""
        g, d = config.generator, dataclasses.asdict(config.discriminator)
        return {
            "G_A": generator_spec(g),
            "G_B": generator_spec(swapped(config)),
            "D_A": {"kind": "patchgan", "judges": "B", "in_channels": g.out_channels, **d},
            "D_B": {"kind": "patchgan", "judges": "A", "in_channels": g.in_channels, **d},
        }

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Unpaired images in both domains, one discriminator scale, and identity only between equal channels."""
        data, o = config.data, config.method
        if data.layout == "aligned":
            raise ConfigError("--layout aligned holds pairs; --recipe cyclegan reads trainA/ trainB/ or A/ B/ folders")
        if data.label_nc or data.instance_dir:
            raise ConfigError("--label-nc and --instance-dir are for paired data; --recipe cyclegan reads images")
        if config.discriminator.num_d > 1:
            raise ConfigError("--num-d > 1 is pix2pixHD's multi-scale discriminator; --recipe cyclegan uses one scale")
        g = config.generator
        if o.lambda_identity > 0 and g.in_channels and g.out_channels and g.in_channels != g.out_channels:
            raise ConfigError(
                f"--lambda-identity {o.lambda_identity}: the identity loss feeds B images to G_A (A -> B), but domain A "
                f"has {g.in_channels} channel(s) and B {g.out_channels}; pass --lambda-identity 0"
            )

    @classmethod
    def open_dataset(cls, config: RunConfig, resume: bool) -> Any:
        """Unpaired domains (a resumed run keeps the value ranges it stored)."""
        d = config.data
        # (A stored configuration may say BtoA: an export of G_B is seen from that direction; training learns both.)
        if d.direction != "AtoB":
            raise ConfigError(
                "--direction BtoA: --recipe cyclegan learns both directions; choose one when translating "
                "(diptych translate --direction)"
            )
        stored = {"A": _range(d.input_range), "B": _range(d.output_range)} if resume else None
        return open_unpaired_dataset(d, serial_batches=config.method.serial_batches, stored_ranges=stored)

    @classmethod
    def fill_from_data(cls, config: RunConfig, summary: Any) -> None:
        """Domain A is the generators' input side, B the output side: channels, sample types and value ranges."""
        fill_channels(config, summary.a.channels, summary.b.channels, str(summary.root))
        d = config.data
        d.input_sample_type, d.sample_type = summary.a.sample_type, summary.b.sample_type
        d.input_range = list(summary.a.value_range) if summary.a.value_range else []
        d.output_range = list(summary.b.value_range) if summary.b.value_range else []
        d.layout = summary.layout

    @classmethod
    def check_data(cls, config: RunConfig, summary: Any, warn: Callable[[str], None]) -> None:
        """Images large enough for the PatchGAN; a warning below the generators' stride."""
        check_patchgan_fits(config, summary)
        warn_below_generator_stride(config, summary.min_side, warn)

    def seed_streams(self, seed: int) -> None:
        """The pools' draws: one stream per pool, from this process's seed."""
        for k, pool in enumerate(self.pools.values()):
            pool.generator.manual_seed(seed + k + 1)

    def example_inputs(self, side: int) -> dict[str, tuple[torch.Tensor, ...]]:
        """G_A and D_A see A and B images; G_B and D_B B and A images."""
        g = self.config.generator
        a = torch.zeros(1, g.in_channels, side, side, device=self.device)
        b = torch.zeros(1, g.out_channels, side, side, device=self.device)
        return {"G_A": (a,), "G_B": (b,), "D_A": (b,), "D_B": (a,)}

    def state_dict(self) -> dict[str, Any]:
        """The image pools (their images and random streams)."""
        return {name: pool.state_dict() for name, pool in self.pools.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the pools."""
        for name, pool in self.pools.items():
            if not isinstance(state.get(name), dict):
                raise CheckpointError(
                    f"the training state has no {name} image pool; it was altered or is not CycleGAN's"
                )
            pool.load_state_dict(state[name])

    def generator_loss(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[torch.Tensor, Losses, Any]:
        """Both generators' loss on a (micro-)batch, through frozen discriminators; also returns (fake_a, fake_b)."""
        o, c, d = self.options, self.calls, self.networks
        fake_b = c["G_A"](real_a)
        rec_a = c["G_B"](fake_b)
        fake_a = c["G_B"](real_b)
        rec_b = c["G_A"](fake_a)
        loss_g_a = self.adversarial(d["D_A"](fake_b), True, for_discriminator=False)
        loss_g_b = self.adversarial(d["D_B"](fake_a), True, for_discriminator=False)
        cycle_a, cycle_b = cycle_losses(real_a, rec_a, real_b, rec_b)
        loss = loss_g_a + loss_g_b + o.lambda_a * cycle_a + o.lambda_b * cycle_b
        parts = {"G_A": loss_g_a, "G_B": loss_g_b, "cycle_A": cycle_a, "cycle_B": cycle_b}
        if o.lambda_identity > 0:
            idt_a, idt_b = identity_losses(c["G_A"], c["G_B"], real_a, real_b)
            loss = loss + o.lambda_identity * (o.lambda_b * idt_a + o.lambda_a * idt_b)
            parts.update(idt_A=idt_a, idt_B=idt_b)
        return loss, {k: v.detach() for k, v in parts.items()}, (fake_a.detach(), fake_b.detach())

    def discriminator_loss(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One discriminator's halved loss: its domain's real images up, (pooled) fakes down."""
        loss_real = self.adversarial(d(real), True, for_discriminator=True)
        loss_fake = self.adversarial(d(fake), False, for_discriminator=True)
        return 0.5 * (loss_real + loss_fake)

    def train_step(self, batch: dict[str, Any]) -> Losses:
        """G_A and G_B together, then D_A and D_B together (the reference's order), over the run's micro-batches.

        The pools are queried once per micro-batch between the two updates, so an fp32 recomputation of either
        update neither draws from nor fills them twice."""
        micro = self.micro_batches(batch, ("A", "B"))
        n = len(micro)
        fakes: list[Any] = [None] * n
        discriminators = [self.networks["D_A"], self.networks["D_B"]]

        def g_loss(i: int, first: bool) -> tuple[torch.Tensor, Losses]:
            with self.updater.draws(i):
                loss, parts, fakes[i] = self.generator_loss(micro[i]["A"], micro[i]["B"])
            return loss, parts

        for d in discriminators:
            d.requires_grad_(False)
        losses = self.updater.update(self.optimizers["G"], [self.calls["G_A"], self.calls["G_B"]], n, g_loss)
        for d in discriminators:
            d.requires_grad_(True)
        pooled = [
            (self.laid_out(self.pools["fake_A"].query(fake_a)), self.laid_out(self.pools["fake_B"].query(fake_b)))
            for fake_a, fake_b in fakes
        ]

        def d_loss(i: int, first: bool) -> tuple[torch.Tensor, Losses]:
            pooled_a, pooled_b = pooled[i]
            loss_a = self.discriminator_loss(self.calls["D_A"], micro[i]["B"], pooled_b)  # D_A judges B images
            loss_b = self.discriminator_loss(self.calls["D_B"], micro[i]["A"], pooled_a)
            return loss_a + loss_b, {"D_A": loss_a.detach(), "D_B": loss_b.detach()}

        losses.update(self.updater.update(self.optimizers["D"], [self.calls["D_A"], self.calls["D_B"]], n, d_loss))
        return losses


def _range(stored: list[float]) -> tuple[float, float] | None:
    return (stored[0], stored[1]) if stored else None


def identity_losses(
    g_a: Callable[[torch.Tensor], torch.Tensor],
    g_b: Callable[[torch.Tensor], torch.Tensor],
    real_a: torch.Tensor,
    real_b: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity: a generator given an image of its own target domain should return it (unweighted L1 of each)."""
    return l1_loss(g_a(real_b), real_b), l1_loss(g_b(real_a), real_a)
