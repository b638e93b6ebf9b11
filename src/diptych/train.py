"""The trainer: data loading, the step loop, schedules, logging, checkpoints and exact resume."""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import math
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .allocator import retain_freed_memory
from .atomic import remove_stale_temporaries, write_text_atomic
from .checkpoint import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LATEST_FILE,
    STATE_VERSION,
    ema_weights_file,
    load_optimizer_state,
    load_training_state,
    load_weights,
    prune_checkpoints,
    read_checkpoint_config,
    resolve_checkpoint,
    save_checkpoint,
    weights_file,
    write_checkpoint_folder,
)
from .config import RunConfig, TrainConfig, flag_name, load_config
from .data import collate_pairs
from .device import resolve_device
from .distributed import Distributed, EpochSampler, check_global_batch, prepare_networks, process_group
from .ema import WeightAverage
from .errors import ConfigError
from .memory import measure_allocations
from .plots import CURVES_FILE, plot_training_curves
from .precision import resolve_precision, use_precision
from .recipes import RECIPES, UNPAIRED, create_recipe
from .recipes.base import check_scale
from .signals import STOP_SIGNALS, Terminated, signal_name
from .validation import make_validator

LOG_FILE = "log.jsonl"
BEST_DIR = "best"


def lr_factor(t: TrainConfig, epoch: int) -> float:
    """The closed-form learning-rate multiplier of the linear, step and cosine policies at an epoch."""
    total = t.epochs + t.epochs_decay
    if total == 0:
        return 1.0  # a run measured in --max-steps only keeps a constant rate
    if t.lr_policy == "linear":
        # pix2pix: constant for `epochs`, then linearly towards zero over `epochs_decay`.
        return max(0.0, 1.0 - max(0, epoch + 1 - t.epochs) / float(t.epochs_decay + 1))
    if t.lr_policy == "step":
        return t.lr_gamma ** (epoch // t.lr_step_epochs)
    if t.lr_policy == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / total))
    raise ValueError(f"{t.lr_policy} has no closed form")


def warmup_factor(t: TrainConfig, step: int) -> float:
    """The linear warm-up's multiplier of the scheduled learning rates at optimiser step `step` (counted from 0)."""
    return min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else 1.0


@contextmanager
def warmed_up(optimizers: Iterable[torch.optim.Optimizer], factor: float) -> Iterator[None]:
    """Run a step at `factor` times every scheduled learning rate, then put the scheduled rates back exactly, so
    the epoch schedules (plateau included) and the checkpoints never see the warm-up."""
    if factor == 1.0:
        yield
        return
    groups = [group for opt in optimizers for group in opt.param_groups]
    scheduled = [group["lr"] for group in groups]
    for group, lr in zip(groups, scheduled, strict=True):
        group["lr"] = lr * factor
    try:
        yield
    finally:
        for group, lr in zip(groups, scheduled, strict=True):
            group["lr"] = lr


def make_scheduler(optimizer: torch.optim.Optimizer, t: TrainConfig) -> Any:
    """The learning-rate policy, stepped once per epoch (plateau is fed the epoch mean of the recipe's monitor loss)."""
    if t.lr_policy in ("linear", "step", "cosine"):
        # A pure function of the epoch, so resuming with a longer schedule continues the new curve.
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(t, e))
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.2, threshold=0.01, patience=t.plateau_patience
    )


@dataclass
class TrainResult:
    """Where a finished (or interrupted) run left its files."""

    run_dir: Path
    checkpoint: Path
    steps: int
    interrupted: bool = False
    signal: int = 0  # the stop signal (SIGINT, SIGTERM) that ended the run early; 0 if none did


class Trainer:
    """Runs a recipe over a paired dataset; owns no global state, so one process can hold several."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        dist: Distributed | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / CHECKPOINTS_DIR
        self.resume = resume
        config.validate()
        # One process unless torchrun started several: then rank 0 alone writes files and shows progress.
        self.dist = dist or Distributed(device=resolve_device(config.train.device))
        self.progress = progress and self.dist.is_main
        if resume:
            if not (self.ckpt_root / LATEST_FILE).is_file():
                raise ConfigError(f"--resume: {self.run_dir} has no checkpoint to resume from")
        elif (self.ckpt_root / LATEST_FILE).exists():
            raise ConfigError(
                f"{self.run_dir}: this run folder already has checkpoints; pass --resume to continue it "
                "or choose a new --run-dir"
            )
        self.config = config
        self.device = self.dist.device
        self.recipe_class = RECIPES[config.recipe]
        check_scale(self.recipe_class, config)
        self.dataset: Any = self.recipe_class.open_dataset(config, resume)
        self.recipe_class.fill_from_data(config, self.dataset.summary)
        self.recipe_class.check_config(config)  # again, now that the data has decided the channels
        self.validator, self.dataset = make_validator(config, self.dataset, self.device)
        self.best: dict[str, Any] | None = None
        self._writer: Any = None
        self.recipe_class.check_data(config, self.dataset.summary, self._warn)
        # The trainer's random numbers (initialisation, dropout, penalties) come from its own generator state,
        # swapped in around its work, so other code in the process neither disturbs nor is disturbed by it.
        self._rng_state = torch.Generator().manual_seed(config.train.seed).get_state()
        self._cuda_rng_state: list[torch.Tensor] | None = None
        with self._own_rng():
            self.recipe = create_recipe(config, self.device)
            if not resume:  # (a resumed run's checkpoint already holds what initialise would load)
                self.recipe.initialise()
        # The generators' moving averages (of the bare modules: under torchrun every process keeps the same one),
        # copied before any forward is wrapped for mixed precision.
        generators = self.recipe_class.generators(config).values()
        self.ema = (
            WeightAverage({name: self.recipe.networks[name] for name in generators}, config.train.ema)
            if config.train.ema > 0
            else None
        )
        self.recipe.seed_streams(self.dist.seed(config.train.seed))
        self.precision = resolve_precision(config.train.precision, self.device, config.data.sample_type)
        if self.dist.enabled:
            # Same initial weights everywhere, then each rank draws its own dropout masks and penalty points.
            self._rng_state = torch.Generator().manual_seed(self.dist.seed(config.train.seed)).get_state()
        for module in [*self.recipe.networks.values(), *self.averaged.values()]:
            use_precision(module, self.precision, self.device)
            if config.train.grad_checkpoint and hasattr(module, "checkpointing"):
                module.checkpointing = True
        self.schedulers = {name: make_scheduler(opt, config.train) for name, opt in self.recipe.optimizers.items()}
        # --batch-size is global: each process loads its share and splits it into --accum-steps micro-batches.
        self.rank_batch = check_global_batch(
            config.data.batch_size, self.dist.world_size, config.train.accum_steps, len(self.dataset)
        )
        if len(self.dataset) < config.data.batch_size:
            # One process, no micro-steps: the loader's only batch is the whole (smaller) dataset.
            self._warn(
                f"--batch-size {config.data.batch_size} is larger than the {len(self.dataset)} training items, so "
                f"every step uses {len(self.dataset)}; cut large images into more, smaller ones for full batches"
            )
        self.steps_per_epoch = self._sampler().steps_per_epoch
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        # Sum (a tensor on the training device, so no per-step sync) and count of the monitor loss this epoch.
        self.epoch_l1: list[Any] = [0.0, 0]
        self._remove_stale_temporaries()
        if resume:
            self._restore()
        converted = prepare_networks(self.recipe.networks, self.dist)
        if converted and self.progress:
            print(f"diptych: SyncBatchNorm in {', '.join(converted)} (batch statistics over all processes)")
        self.recipe.distribute(self.dist)

    def _remove_stale_temporaries(self) -> None:
        """Delete what saves interrupted by a kill left in the run (rank 0 writes there; the others wait for it)."""
        if self.dist.is_main:
            for folder in (self.run_dir, self.ckpt_root):
                removed = remove_stale_temporaries(folder)
                if removed and self.progress:
                    print(
                        f"diptych: removed {len(removed)} unfinished file(s) of an interrupted save in {folder}",
                        file=sys.stderr,
                    )
        self.dist.barrier()

    def _sampler(self) -> EpochSampler:
        """This process's share of every epoch; full global batches only when they are split (processes, micro-steps)."""
        split = self.dist.world_size * self.config.train.accum_steps > 1
        return EpochSampler(
            len(self.dataset),
            self.config.train.seed,
            shuffle=True,
            batch_size=self.config.data.batch_size,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            drop_last=split,
        )

    def _warn(self, message: str) -> None:
        """A warning on stderr (from the process that shows progress)."""
        if self.progress:
            print(f"diptych: warning: {message}", file=sys.stderr)

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run a block on this trainer's private random state (CPU, and CUDA when training there)."""
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.set_rng_state(self._rng_state)
            if cuda:
                if self._cuda_rng_state is None:
                    torch.cuda.manual_seed(self.dist.seed(self.config.train.seed))
                else:
                    torch.cuda.set_rng_state(self._cuda_rng_state, self.device)
            try:
                yield
            finally:
                self._rng_state = torch.get_rng_state()
                if cuda:
                    self._cuda_rng_state = torch.cuda.get_rng_state(self.device)

    @property
    def averaged(self) -> dict[str, nn.Module]:
        """The generators' moving averages by network name (empty without --ema)."""
        return self.ema.modules if self.ema is not None else {}

    def inference_networks(self) -> dict[str, nn.Module]:
        """The networks validation runs: the generators' moving averages where there are some."""
        return {**self.recipe.networks, **self.averaged}

    @property
    def total_steps(self) -> int:
        """Steps the run will take in all."""
        t = self.config.train
        by_epochs = (t.epochs + t.epochs_decay) * self.steps_per_epoch
        return min(by_epochs, t.max_steps) if t.max_steps and by_epochs else (t.max_steps or by_epochs)

    def fit(self) -> TrainResult:
        """Train to the end (or max_steps); save checkpoints on schedule, at the end and on Ctrl-C."""
        t, data = self.config.train, self.config.data
        if self.resume and self.step >= self.total_steps:
            if self.dist.is_main:
                print(
                    f"diptych: {self.run_dir} already finished {self.step} steps; raise --max-steps or --epochs to go on"
                )
            return TrainResult(self.run_dir, resolve_checkpoint(self.ckpt_root), self.step)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / CONFIG_FILE, self.config.to_json())
            if not self.resume:
                write_text_atomic(self.run_dir / LOG_FILE, "")  # a fresh run never continues an abandoned run's log
        if self.progress:
            print(self.describe(), file=sys.stderr)
        # Every step frees and allocates the same activations: keep that memory in the process instead of faulting it
        # in again each step (1-5% of a 256x256 CycleGAN step's CPU time, more on a busy machine; BENCHMARKS.md).
        retain_freed_memory()
        sampler = self._sampler()
        loader = DataLoader(
            self.dataset,
            batch_size=self.rank_batch,
            sampler=sampler,
            num_workers=data.workers,
            collate_fn=collate_pairs,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init,
            # A private generator keeps DataLoader from drawing on the global RNG that dropout uses.
            generator=torch.Generator().manual_seed(t.seed),
            persistent_workers=data.workers > 0,
        )
        total_epochs = t.epochs + t.epochs_decay if (t.epochs + t.epochs_decay) else math.inf
        total = self.total_steps
        bar = tqdm(
            total=total,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,  # a log file gets a line every 30 s, not every step
        )
        window: dict[str, list[torch.Tensor]] = {}
        last_saved = -1
        started, cpu_started = time.perf_counter(), time.process_time()
        stop_signal = 0
        with _GracefulStop(self.dist.enabled) as stop, _deterministic(t.deterministic, self.device):
            while self.epoch < total_epochs and self.step < total and not stop_signal:
                sampler.set_epoch(self.epoch, start=self.batch_in_epoch)
                for module in self.recipe.networks.values():
                    module.train()
                for batch in loader:
                    self.recipe.before_step(self.step, total)
                    with self._own_rng(), warmed_up(self.recipe.optimizers.values(), warmup_factor(t, self.step)):
                        losses = self.recipe.train_step(batch)
                    if self.ema is not None:
                        self.ema.update(self.recipe.networks, self.step)
                    self.step += 1
                    self.batch_in_epoch += 1
                    self.epoch_l1[0] = self.epoch_l1[0] + losses[self.recipe.monitor].double()
                    self.epoch_l1[1] += 1
                    for name, value in losses.items():
                        window.setdefault(name, []).append(value)
                    bar.update(1)
                    if self.step % t.log_every == 0 or self.step == total:
                        means = self._log(window, time.perf_counter() - started, time.process_time() - cpu_started)
                        bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()}, refresh=False)
                        window = {}
                    if self.validator is not None and self.step % self.config.validation.every == 0:
                        self._validate_on_main()
                    # Every process stops at the same step, whichever received Ctrl-C or SIGTERM.
                    stop_signal = self.dist.max(stop.signal)
                    if self.step % t.save_every == 0:
                        self.save()
                        last_saved = self.step
                    if self.step >= total or stop_signal:
                        break
                if self.batch_in_epoch >= self.steps_per_epoch:
                    self._end_epoch()
            bar.close()
            if window:
                self._log(window, time.perf_counter() - started, time.process_time() - cpu_started)
            if self.validator is not None and self.step % self.config.validation.every != 0:
                self._validate_on_main()
            # Still inside the signal handling: a stop signal now lets this last save finish.
            ckpt = self.save() if last_saved != self.step else self.ckpt_root / f"step_{self.step:08d}"
        if self._writer is not None:
            self._writer.close()
        if self.dist.is_main:
            plot_training_curves(self.run_dir / LOG_FILE, self.run_dir / CURVES_FILE)
        self.dist.barrier()
        stopped = stop_signal if self.step < total else 0
        return TrainResult(self.run_dir, ckpt, self.step, interrupted=bool(stopped), signal=stopped)

    def describe(self) -> str:
        """A few lines on what this run will do: data, networks, device, length, destination."""
        nets = ", ".join(
            f"{name} {type(m).__name__} ({sum(p.numel() for p in m.parameters()) / 1e6:.1f}M params)"
            for name, m in self.recipe.networks.items()
        )
        if self.averaged:
            nets += f"; moving averages of {', '.join(self.averaged)} (--ema {self.config.train.ema:g})"
        start = f"resuming at step {self.step}, " if self.resume else ""
        return (
            f"diptych: {len(self.dataset)} {self._describe_data()}\n"
            f"diptych: {self.config.recipe}: {nets}; on {self.device}, {self.precision}{self._describe_split()}\n"
            f"diptych: {start}{self.total_steps} steps ({self.steps_per_epoch} per epoch), writing to {self.run_dir}\n"
            f"diptych: {self.memory_estimate()}"
        )

    def _describe_data(self) -> str:
        """The training data in a line: what kind, where, channels, sample types and values."""
        summary, g = self.dataset.summary, self.config.generator
        where = f"({summary.layout}, {summary.root})"
        if self.recipe_class.data_kind == UNPAIRED:
            return f"unpaired items {where}; domain A: {summary.a.describe()}; domain B: {summary.b.describe()}"
        return (
            f"pairs {where}, {g.in_channels}->{g.out_channels} channels, {summary.dtype}; "
            f"values: {summary.describe_ranges()}"
        )

    def _describe_split(self) -> str:
        world, accum = self.dist.world_size, self.config.train.accum_steps
        if world * accum == 1:
            return ""
        micro = self.rank_batch // accum
        return f" x {world} processes; global batch {self.config.data.batch_size} = {world} x {accum} x {micro}"

    def memory_estimate(self) -> str:
        """Weights + gradients + Adam moments (4 x fp32 per parameter; 1 more per averaged one), activations of one
        forward pass of every network on the recipe's example inputs (every operation's output counted, layers and
        functional calls alike, at the sizes the recipe gives: an upscaler's output at its scale), and the runtime's
        own footprint."""
        side = self.dataset.summary.min_side
        batch = self.rank_batch // self.config.train.accum_steps  # what one forward pass of one process holds
        params = sum(p.numel() for m in self.recipe.networks.values() for p in m.parameters())
        averaged = sum(p.numel() for m in self.averaged.values() for p in m.parameters())
        state_bytes = params * 4 * 4 + averaged * 4
        act_bytes = 0.0
        inputs = self.recipe.example_inputs(side)
        modes = {name: m.training for name, m in self.recipe.networks.items()}
        try:
            with torch.no_grad():
                for name, module in self.recipe.networks.items():
                    module.eval()
                    act_bytes += measure_allocations(functools.partial(module, *inputs[name])).total
        finally:
            for name, module in self.recipe.networks.items():
                module.train(modes[name])
        # Autograd keeps roughly every layer's output for backward; a generated image goes through a D twice.
        act_total = act_bytes * batch * 2
        gib = 2**30
        runtime = 0.4 * gib  # torch, the libraries and the data pipeline, measured on this project's CPU runs
        total = state_bytes + act_total + runtime
        return (
            f"memory estimate: about {total / gib:.1f} GiB ({state_bytes / gib:.2f} weights, gradients and Adam "
            f"state{', weight averages' if averaged else ''}; {act_total / gib:.2f} activations at {side}x{side}, batch {batch}; 0.4 runtime)"
        )

    def _end_epoch(self) -> None:
        mean_l1 = self._epoch_l1_sum() / max(1, self.epoch_l1[1])
        for sched in self.schedulers.values():
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(mean_l1)
            else:
                with warnings.catch_warnings():
                    # A network not updated yet (pix2pix's D before --gan-start) still follows the run's schedule.
                    warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"))
                    sched.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        # Sum (a tensor on the training device, so no per-step sync) and count of the monitor loss this epoch.
        self.epoch_l1: list[Any] = [0.0, 0]

    def _epoch_l1_sum(self) -> float:
        """This epoch's sum of the monitor loss over steps, each step's value averaged over all processes' shards."""
        total = torch.as_tensor(self.epoch_l1[0], dtype=torch.float64, device=self.device)
        return float(self.dist.mean(total))

    def _log(self, window: dict[str, list[torch.Tensor]], elapsed: float, cpu: float) -> dict[str, float]:
        """Append one log.jsonl record: the step, epoch, wall and CPU seconds of this process since training
        started (time_s, cpu_s: all its threads, data loading in-process included), learning rates, mean losses."""
        # One device sync per log line, not per step; under torchrun, one all-reduce for the global batch's means.
        keys = sorted(window)
        stacked = torch.stack([torch.stack(window[k]).double().mean() for k in keys])
        means = dict(zip(keys, self.dist.mean(stacked).tolist(), strict=True))
        if not self.dist.is_main:
            return means
        record = {"step": self.step, "epoch": self.epoch, "time_s": round(elapsed, 3), "cpu_s": round(cpu, 3)}
        if self.recipe.amp.fallbacks:
            record["fp32_fallbacks"] = self.recipe.amp.fallbacks
        # The rates the last step used: the scheduled ones times the warm-up's factor.
        warm = warmup_factor(self.config.train, self.step - 1)
        record.update({f"lr_{k}": opt.param_groups[0]["lr"] * warm for k, opt in self.recipe.optimizers.items()})
        record.update({k: round(v, 6) for k, v in means.items()})
        self._append_log(record)
        writer = self.tensorboard()
        if writer is not None:
            for key, value in record.items():
                if key.startswith("lr_"):
                    writer.add_scalar(f"lr/{key[3:]}", value, self.step)
            for key, value in means.items():
                writer.add_scalar(f"loss/{key}", value, self.step)
        return means

    def _append_log(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    def tensorboard(self) -> Any:
        """The TensorBoard writer when --tensorboard is on (created on first use), else None."""
        if not self.config.train.tensorboard:
            return None
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(
                    "--tensorboard needs the tensorboard package: pip install 'diptych[tensorboard]'"
                ) from None
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step + 1)
        return self._writer

    def _validate_on_main(self) -> None:
        """Validation runs on rank 0 while the other processes wait (it must fit in the process group's timeout)."""
        if self.dist.is_main:
            self.validate()
        self.dist.barrier()

    def validate(self) -> dict[str, float]:
        """Score the generator on the validation pairs; log the means and keep the best checkpoint."""
        assert self.validator is not None
        generators = self.recipe_class.generators(self.config)
        result = self.validator(self.inference_networks())
        record = {"step": self.step, "epoch": self.epoch}
        record.update({f"val_{k}": round(v, 6) for k, v in result.means.items()})
        self._append_log(record)
        value = result.means[self.validator.metric]
        if self.validator.is_better(value, None if self.best is None else self.best["value"]):
            self.best = {"step": self.step, "metric": self.validator.metric, "value": value}
            write_checkpoint_folder(
                self.ckpt_root / BEST_DIR,
                self.config,
                {n: self.recipe.networks[n] for n in generators.values()},
                averaged=self.averaged,
            )
            write_text_atomic(self.ckpt_root / f"{BEST_DIR}.json", json.dumps(self.best, indent=2))
        writer = self.tensorboard()
        if writer is not None:
            for key, val in result.means.items():
                writer.add_scalar(f"val/{key}", val, self.step)
            for i, triplet in enumerate(result.samples):
                writer.add_image(f"val/{i}", image_grid(triplet), self.step)
        return result.means

    def training_state(self) -> dict[str, Any]:
        """Everything besides weights needed to continue exactly: optimisers, schedules, counters, RNG."""
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_l1": [self._epoch_l1_sum(), int(self.epoch_l1[1])],
            "optimizers": {k: o.state_dict() for k, o in self.recipe.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng_cpu": self._rng_state,
            "best": json.dumps(self.best),
            "amp_fallbacks": self.recipe.amp.fallbacks,
            "recipe": self.recipe.state_dict(),
        }
        if self.recipe.amp.scaler is not None:
            state["grad_scaler"] = self.recipe.amp.scaler.state_dict()
        if self._cuda_rng_state is not None:
            state["rng_cuda"] = self._cuda_rng_state
        if self.dist.enabled:
            # Every rank's dropout/penalty stream, so a resume with the same number of processes continues exactly.
            ranks = self.dist.gather((self._rng_state, self._cuda_rng_state))
            state["world_size"] = self.dist.world_size
            # Each rank's own method state too (CycleGAN: each rank pools its own fakes).
            state["recipe_ranks"] = self.dist.gather(state["recipe"])
            state["rng_cpu_ranks"] = [cpu for cpu, _ in ranks]
            if ranks[0][1] is not None:
                state["rng_cuda_ranks"] = [cuda for _, cuda in ranks]
        return state

    def save(self) -> Path:
        """Write a checkpoint for the current step and prune old ones (rank 0 writes; every process takes part)."""
        name = f"step_{self.step:08d}"
        state = self.training_state()
        if self.dist.is_main:
            save_checkpoint(self.ckpt_root, name, self.config, self.recipe.networks, state, averaged=self.averaged)
            prune_checkpoints(self.ckpt_root, self.config.train.keep_last, protect={name})
        self.dist.barrier()
        return self.ckpt_root / name

    def _restore(self) -> None:
        folder = resolve_checkpoint(self.ckpt_root)
        for name, module in self.recipe.networks.items():
            load_weights(module, folder / weights_file(name), name)
        for name, module in self.averaged.items():
            load_weights(module, folder / ema_weights_file(name), name)
        state = load_training_state(folder)
        for name, opt in self.recipe.optimizers.items():
            load_optimizer_state(opt, state["optimizers"].get(name), name, folder)
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.recipe.amp.fallbacks = int(state.get("amp_fallbacks", 0))
        self.recipe.load_state_dict(state.get("recipe", {}))
        if self.recipe.amp.scaler is not None and "grad_scaler" in state:
            self.recipe.amp.scaler.load_state_dict(state["grad_scaler"])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                # The schedule may have been lengthened on resume: put the rate on the (new) curve.
                opt = self.recipe.optimizers[name]
                for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
                    group["lr"] = base * lr_factor(self.config.train, self.epoch)
                sched._last_lr = [group["lr"] for group in opt.param_groups]
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.epoch_l1 = [float(state["epoch_l1"][0]), int(state["epoch_l1"][1])]
        self._rng_state = state["rng_cpu"]
        self._cuda_rng_state = state.get("rng_cuda")
        if self.dist.enabled:
            self._restore_rank_rng(state)
        self.best = json.loads(state.get("best", "null"))
        if self.dist.is_main:
            self._truncate_log()

    def _restore_rank_rng(self, state: dict[str, Any]) -> None:
        """This rank's random stream: as saved when the number of processes is unchanged, else a fresh one per rank."""
        if state.get("world_size") == self.dist.world_size:
            self.recipe.load_state_dict(
                state.get("recipe_ranks", [state.get("recipe", {})] * self.dist.world_size)[self.dist.rank]
            )
            self._rng_state = state["rng_cpu_ranks"][self.dist.rank]
            self._cuda_rng_state = state.get("rng_cuda_ranks", [None] * self.dist.world_size)[self.dist.rank]
            return
        seed = self.dist.seed(self.config.train.seed) + self.step
        self._rng_state = torch.Generator().manual_seed(seed).get_state()
        self._cuda_rng_state = None
        if self.progress:
            print(
                f"diptych: resuming with {self.dist.world_size} processes (saved with {state.get('world_size', 1)}): "
                "same global batches, new dropout draws",
                file=sys.stderr,
            )

    def _truncate_log(self) -> None:
        """Drop log lines written after the checkpoint being resumed (they will be written again)."""
        log = self.run_dir / LOG_FILE
        if not log.is_file():
            return
        kept = []
        for line in log.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line torn by a crash mid-write
        write_text_atomic(log, "".join(line + "\n" for line in kept))


def _worker_init(_: int) -> None:
    # Workers decode images; one thread each avoids oversubscribing the cores the model uses.
    torch.set_num_threads(1)
    # Ctrl-C and SIGTERM (sent to the whole process group by terminals and Slurm) are the main process's
    # business: it stops at a step boundary, saves, and then shuts the workers down.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextmanager
def _deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the duration of a run, restoring the process's previous setting afterwards.

    Without --deterministic on CUDA, cuDNN benchmarks its algorithms for the run's (fixed) crop size instead."""
    if not enabled:
        previous_benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = previous_benchmark or device.type == "cuda"
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = previous_benchmark
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


class _GracefulStop:
    """Turns the first Ctrl-C or SIGTERM into a request to stop at the next step boundary; a second one aborts.

    Under torchrun a worker gets the signal twice (from the terminal or the scheduler, and forwarded by torchrun),
    so there a second one within a few seconds of the first counts as the same.
    """

    def __init__(self, forwarded: bool = False) -> None:
        self.signal = 0  # the stop signal received, 0 while none has been
        self._previous: dict[int, Any] = {}
        self._grace_s = 5.0 if forwarded else 0.0
        self._first = 0.0

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signal != 0

    def __enter__(self) -> _GracefulStop:
        # Only in the main thread, and not for a signal the process was started with ignored (nohup, &).
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            if time.monotonic() - self._first < self._grace_s:
                return
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        self.signal = signum
        self._first = time.monotonic()
        name = signal_name(signum)
        print(
            f"\ndiptych: {name}: stopping after this step to save a checkpoint ({name} again to abort)",
            file=sys.stderr,
        )

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def resume_config(run_dir: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> RunConfig:
    """The stored config of a run, with schedule-length fields optionally overridden to train longer."""
    config = load_config(Path(run_dir) / CONFIG_FILE, stored=True)
    if (Path(run_dir) / CHECKPOINTS_DIR / LATEST_FILE).is_file():
        read_checkpoint_config(run_dir)  # the checkpoint's own copy, too, must be intact and of a format read here
    allowed = {
        "train": {
            "epochs",
            "epochs_decay",
            "max_steps",
            "save_every",
            "keep_last",
            "log_every",
            "device",
            "tensorboard",
            "deterministic",
            "precision",
            "grad_checkpoint",
            "accum_steps",
        },
        "data": {"workers"},
        "validation": {"every"},
    }
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            if key not in allowed.get(section, set()):
                names = sorted(_flag_name(s, k) for s, keys in allowed.items() for k in keys)
                raise ConfigError(
                    f"{_flag_name(section, key)} cannot change when resuming; only {', '.join(names)} can"
                )
            setattr(getattr(config, section), key, value)
    return config.validate()


def _flag_name(section: str, key: str) -> str:
    """The command-line flag of a config field."""
    fields = {f.name: f for f in dataclasses.fields(getattr(RunConfig(), section))}
    return "--" + (flag_name(fields[key]) if key in fields else key.replace("_", "-"))


def train(config: RunConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a model as `config` describes, writing checkpoints and logs under run_dir.

    Started by torchrun, every process joins the group and trains on its share of each global batch.
    """
    with process_group(config.train.device) as dist:
        trainer = Trainer(config, run_dir, resume=resume, progress=progress, dist=dist)
        try:
            return trainer.fit()
        finally:
            if dist.enabled:
                # DDP's reducers hold the process group (and gloo work): free them while the group is alive, not
                # during interpreter shutdown, where a late gloo teardown aborted a torchrun worker at exit
                # ("terminate called without an active exception", about 1 run in 12 on a loaded machine).
                del trainer
                gc.collect()


def image_grid(triplet: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Input | output | target side by side as a 3xHxW image in [0, 1] (grey and >3 channels shown as RGB)."""
    shown = []
    for t in triplet:
        t = (t.float().clamp(-1, 1) + 1) / 2
        t = t.expand(3, -1, -1) if t.shape[0] == 1 else t[:3] if t.shape[0] >= 3 else t[:1].expand(3, -1, -1)
        shown.append(t)
    return torch.cat(shown, dim=2)
