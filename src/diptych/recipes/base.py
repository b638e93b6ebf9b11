"""The recipe contract (what a training method declares and does) and the update mechanics every step shares."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import RunConfig, TrainConfig
from ..data import open_paired_dataset
from ..distributed import Distributed, no_sync, wrap
from ..errors import ConfigError
from ..nets import init_weights, receptive_field
from ..precision import AmpStep, resolve_precision

Losses = dict[str, torch.Tensor]
Batch = dict[str, torch.Tensor]
PAIRED, UNPAIRED, SR = "paired", "unpaired", "sr"  # SR: LR/HR crops, {"LR", "HR"} batches


def adam(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    """Adam with the fused kernel where PyTorch has one for the parameters' device (CPU and CUDA since 2.4).

    The fused kernel makes one pass over parameters, gradients and moments; on 2 Zen 4 cores it updates a
    unet_256 (54M parameters) in 16 ms instead of 120 (foreach) or 170 (the per-tensor loop PyTorch picks on
    CPU by default). It computes the same update up to float rounding.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, ValueError, TypeError):  # older torch, or a device without a fused kernel
        return torch.optim.Adam(params, lr=lr, betas=betas)


def adam_optimizers(
    networks: dict[str, nn.Module], t: TrainConfig, discriminators: Iterable[str]
) -> dict[str, torch.optim.Optimizer]:
    """One Adam per network with the run's betas and learning rate, --lr-d's for the discriminators (pix2pix's
    and pix2pixHD's choice)."""
    judges = set(discriminators)
    return {
        name: adam(net.parameters(), t.discriminator_lr if name in judges else t.lr, (t.beta1, t.beta2))
        for name, net in networks.items()
    }


class Updater:
    """The update mechanics every GAN step shares, for any networks and optimisers: micro-batch accumulation
    (losses scaled by 1/N, DDP all-reducing on the last micro-batch only), mixed precision with the fp32
    recomputation (AmpStep), and replay of each micro-batch's random draws when a network runs again."""

    def __init__(self, amp: AmpStep, device: torch.device, accum_steps: int) -> None:
        self.amp = amp
        self.device = device
        self.accum_steps = accum_steps
        self._rng: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def split(self, batch: dict[str, Any], keys: Sequence[str]) -> list[Batch]:
        """The batch's tensors under `keys` as accum_steps micro-batches on the device; starts a new step."""
        self._rng = []
        parts = [torch.tensor_split(batch[k], self.accum_steps) for k in keys]
        return [
            {k: t.to(self.device, non_blocking=True) for k, t in zip(keys, group, strict=True)}
            for group in zip(*parts, strict=True)
        ]

    @contextmanager
    def draws(self, i: int) -> Iterator[None]:
        """Micro-batch i's random draws (dropout): recorded the first time in a step, replayed on every later run."""
        if i == len(self._rng):
            self._rng.append(_rng_state(self.device))
            yield
            return
        with _replayed_rng(self._rng[i], self.device):
            yield

    def update(
        self,
        optimizer: torch.optim.Optimizer,
        trained: Sequence[nn.Module],
        n: int,
        loss: Callable[[int, bool], tuple[torch.Tensor, Losses]],
    ) -> Losses:
        """Zero, accumulate loss(i, first) over n micro-batches, step; the whole phase again in fp32 on overflow.

        `trained` are the (possibly DDP-wrapped) networks whose gradients this update all-reduces; returns the
        logged parts, averaged over micro-batches."""

        def phase(first: bool) -> tuple[dict[str, Any], torch.Tensor]:
            logged: dict[str, list[torch.Tensor]] = {}
            finite = torch.ones((), dtype=torch.bool, device=self.device)
            for i in range(n):
                with contextlib.ExitStack() as stack:
                    for net in trained:
                        stack.enter_context(no_sync(net, i < n - 1))
                    value, parts = loss(i, first)
                    finite &= torch.isfinite(value.detach())
                    self.amp.backward(value / n if n > 1 else value)
                for key, part in parts.items():
                    logged.setdefault(key, []).append(part)
            return logged, finite

        logged = self.amp.run(optimizer, phase)
        return {k: v[0] if n == 1 else torch.stack(v).mean() for k, v in logged.items()}


class Recipe:
    """A training method: everything the trainer, the CLI and the checkpoint need to know about it.

    Subclasses declare the class attributes and build `networks` (bare modules: checkpoints, validation) and
    `optimizers`; `calls` holds what the step calls (the same modules, or DDP wrappers after `distribute`)."""

    name: ClassVar[str]
    help: ClassVar[str]  # one line, for `--recipe` and the CLI's section title
    data_kind: ClassVar[str] = PAIRED  # the dataset the step reads: PAIRED, UNPAIRED or SR
    section: ClassVar[type]  # the recipe's own config section (a dataclass of its options with their defaults)
    defaults: ClassVar[dict[str, dict[str, Any]]] = {}  # shared fields whose defaults this method changes
    monitor: ClassVar[str] = "G_L1"  # the loss whose epoch mean drives the plateau learning-rate policy
    partly_frozen: ClassVar[frozenset[str]] = frozenset()  # networks some of whose parameters may get no gradient
    upscales: ClassVar[bool] = False  # whether its data gives targets `scale` x the inputs (super-resolution)

    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    calls: dict[str, nn.Module]

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        self.config = config
        self.options = config.method
        self.device = device
        t = config.train
        precision = resolve_precision(t.precision, device, config.data.sample_type)
        self.amp = AmpStep(precision, device)
        self.updater = Updater(self.amp, device, t.accum_steps)
        self.memory_format = torch.contiguous_format  # the layout of the images the step feeds its networks

    def run_channels_last(self, allowed: bool = True) -> None:
        """Feed the networks channels-last images when the step runs in bf16/fp16 on the CPU (and `allowed`):
        oneDNN then convolves them as they are instead of reordering every input to its blocked layout and every
        output back, and pads, norms and activations keep the layout. A pix2pix step at 256 px, batch 4, ran 1.5x
        faster, a CycleGAN step 10-15% (BENCHMARKS.md); 64 px steps and fp32 gained nothing measurable, and CUDA
        was not measured, so those keep NCHW (and their results as they were)."""
        cpu_low_precision = self.device.type == "cpu" and self.amp.precision != "fp32"
        self.memory_format = torch.channels_last if allowed and cpu_low_precision else torch.contiguous_format

    def laid_out(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the layout the networks run in (no copy when they already are)."""
        return images.contiguous(memory_format=self.memory_format)

    def micro_batches(self, batch: dict[str, Any], keys: Sequence[str]) -> list[Batch]:
        """The batch's images under `keys` as the step's micro-batches, on the device, in the networks' layout."""
        return [{k: self.laid_out(v) for k, v in m.items()} for m in self.updater.split(batch, keys)]

    @classmethod
    def generators(cls, config: RunConfig) -> dict[str, str]:
        """The networks it offers for inference, by direction ("AtoB", "BtoA")."""
        return {config.data.direction: "generator"}

    @classmethod
    def network_specs(cls, config: RunConfig) -> dict[str, dict[str, Any]]:
        """Each network's architecture, as stored in the checkpoint's manifest ("kind" + its fields)."""
        raise NotImplementedError

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        """Refuse (ConfigError) option combinations this method cannot train."""

    @classmethod
    def open_dataset(cls, config: RunConfig, resume: bool) -> Any:
        """The training dataset (paired by default); resume: the run's stored value ranges apply."""
        return open_paired_dataset(config.data)

    @classmethod
    def fill_from_data(cls, config: RunConfig, summary: Any) -> None:
        """Fill what the data decides (channels, sample types, value ranges, layout) into the config."""
        fill_channels(config, summary.in_channels, summary.out_channels, str(summary.root))
        d = config.data
        d.sample_type, d.input_sample_type = summary.dtype, summary.in_dtype or summary.dtype
        d.layout = summary.layout
        # Stored with every checkpoint, so translation maps values exactly as training did.
        d.input_range = list(summary.in_range) if summary.in_range else []
        d.output_range = list(summary.out_range) if summary.out_range else []

    def initialise_weights(self) -> None:
        """--init-type on every network but the generators whose family initialises its own weights."""
        t, own = self.config.train, self.config.generator.initialises_itself
        generators = set(self.generators(self.config).values())
        for name, net in self.networks.items():
            if not (own and name in generators):
                init_weights(net, t.init, t.init_gain)

    def seed_streams(self, seed: int) -> None:
        """Seed the method's own random streams (e.g. image pools) from this process's seed."""

    @classmethod
    def check_data(cls, config: RunConfig, summary: Any, warn: Callable[[str], None]) -> None:
        """Refuse (ConfigError) training data this method's networks cannot use, warn about what is wasteful;
        `summary` describes the data (before any network is built)."""

    def initialise(self) -> None:
        """A fresh run's initialisation from elsewhere (e.g. a stage-1 run); not called when resuming."""

    def example_inputs(self, side: int) -> dict[str, tuple[torch.Tensor, ...]]:
        """One input per network at the training size, for the memory estimate (what each forward pass sees)."""
        raise NotImplementedError

    def before_step(self, step: int, total: int) -> None:
        """Told before each step (also the first after a resume): its number, from 0, and the run's total steps."""

    def state_dict(self) -> dict[str, Any]:
        """What the method keeps between steps besides weights and optimisers (saved in the training state)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""

    def train_step(self, batch: dict[str, Any]) -> Losses:
        """One optimisation step; returns detached scalar losses by name."""
        raise NotImplementedError

    def distribute(self, ctx: Distributed) -> None:
        """Call every network through DistributedDataParallel in a multi-process run."""
        self.calls = {
            name: wrap(net, ctx, find_unused_parameters=name in self.partly_frozen)
            for name, net in self.networks.items()
        }
        self.amp.any_rank = ctx.any


def check_scale(recipe: type[Recipe], config: RunConfig) -> None:
    """Refuse (ConfigError) an upscaling generator for a recipe whose targets have their inputs' size."""
    g = config.generator
    scale = g.geometry().scale
    if scale != 1 and not recipe.upscales:
        raise ConfigError(
            f"--scale {scale}: the {g.arch} generator upscales, and --recipe {recipe.name} trains on targets of their "
            "inputs' size; train it with a super-resolution recipe (or --scale 1 where the family has it)"
        )


def fill_channels(config: RunConfig, found_in: int, found_out: int, where: str) -> None:
    """Generator channels from the data (0 = not given), or ConfigError when given ones disagree with it."""
    g = config.generator
    for field_name, found in (("in_channels", found_in), ("out_channels", found_out)):
        wanted = getattr(g, field_name)
        if wanted == 0:
            setattr(g, field_name, found)
        elif wanted != found:
            flag = field_name.replace("_", "-")
            raise ConfigError(f"--{flag} {wanted} does not match the data ({found} channels in {where})")


def check_patchgan_fits(config: RunConfig, summary: Any) -> None:
    """Refuse training images too small for the (multi-scale) PatchGAN the config describes."""
    d, side = config.discriminator, summary.min_side
    cropped = config.data.preprocess in ("crop", "resize_and_crop", "scale_width_and_crop")
    flag = "--crop-size" if cropped else "image side"
    # The multi-scale discriminator's coarsest PatchGAN sees the image halved num_d - 1 times (3x3 pooling,
    # stride 2, padding 1: ceil(side / 2) each time).
    coarsest = side
    for _ in range(d.num_d - 1):
        coarsest = -(-coarsest // 2)
    if d.n_layers > 0 and coarsest // 2**d.n_layers < 3:
        rf = receptive_field(d.n_layers)
        need = (3 * 2**d.n_layers - 1) * 2 ** (d.num_d - 1) + 1  # the smallest side that halves to enough
        scales = f" at the coarsest of --num-d {d.num_d} scales ({coarsest} px)" if d.num_d > 1 else ""
        # Name the file with the smallest image; when the crop size is too small, the option is the culprit.
        where = f"{summary.min_side_file}: " if not cropped else ""
        raise ConfigError(
            f"{where}{flag} {side} is too small for the {rf}x{rf} PatchGAN (--n-layers {d.n_layers}){scales}, "
            f"which needs at least {need} pixels; use larger crops or fewer --n-layers"
            + (" or --num-d" if d.num_d > 1 else "")
        )


def warn_below_generator_stride(config: RunConfig, side: int, warn: Callable[[str], None]) -> None:
    """Warn when training images are smaller than the generator's stride (they are padded, which costs compute)."""
    g = config.generator
    stride = g.geometry().stride
    if side < stride:
        warn(
            f"training images ({side} px) are smaller than the generator's stride ({stride}); "
            f"they are mirror-padded, which costs compute: consider {g.stride_hint(side)}"
        )


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextmanager
def _replayed_rng(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> Iterator[None]:
    """Run a block from an earlier random state (to redraw the same dropout masks), then continue where we were."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield
