"""Multi-process training under torchrun: joining the process group, rank helpers, DDP wrapping, the sharded sampler.

A plain `diptych train` is a world of one process and everything here is a no-op. Under
`torchrun --nproc-per-node N -m diptych train ...` every process reads RANK, WORLD_SIZE and LOCAL_RANK from its
environment, joins the group (gloo on CPU, nccl on CUDA with one GPU per process, cuda:LOCAL_RANK) and trains on
its own shard of every global batch.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from .device import resolve_device
from .errors import ConfigError, DiptychError

_DDP_OPTIONS = set(inspect.signature(DistributedDataParallel.__init__).parameters)


@dataclass
class Distributed:
    """This process's place in the run: rank, world size, local rank and device; world_size 1 = a plain run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # A gloo group for small host-side agreements (stop requests), so they never wait on the GPU.
    _host_group: Any = None

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints, validation results and shows progress."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process reaches this point (host-side, no GPU work)."""
        if self.enabled:
            dist.barrier(group=self._host_group)

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any rank."""
        return bool(self.max(int(flag)))

    def max(self, value: int) -> int:
        """The largest of every rank's `value`, on every rank (a stop signal any rank received stops all of them at
        the same step)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._host_group)
        return int(t.item())

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of a tensor over all ranks (identity for one process)."""
        if not self.enabled:
            return values
        out = values.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self._host_group)
        return out

    def seed(self, seed: int) -> int:
        """The random seed of this rank's dropout and penalty draws: the run's seed for one process, distinct per rank
        otherwise (initial weights need no care: DDP copies rank 0's to every process)."""
        return seed if not self.enabled else seed * 65_537 + 1_000_003 * (self.rank + 1)


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting RANK and WORLD_SIZE) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """True except in the non-zero ranks of a torchrun launch (for messages printed outside the trainer)."""
    return os.environ.get("RANK", "0") in ("", "0")


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise ConfigError(f"environment variable {name} is missing; start multi-process training with torchrun")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer; launch with torchrun") from None
    if value < 0:
        raise ConfigError(f"environment variable {name}={value} is negative; launch with torchrun")
    return value


def rank_device(spec: str, local_rank: int, world_size: int) -> torch.device:
    """The device of a process: --device auto/cuda means cuda:LOCAL_RANK under torchrun, else as resolve_device."""
    if world_size == 1:
        return resolve_device(spec)
    if spec == "mps":
        raise ConfigError("--device mps cannot train with several processes; use --device cpu or CUDA GPUs")
    if spec.startswith("cuda:"):
        raise ConfigError(
            f"--device {spec} would put every torchrun process on one GPU; use --device cuda (process LOCAL_RANK "
            "takes cuda:LOCAL_RANK) and choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"LOCAL_RANK {local_rank} needs cuda:{local_rank}, but this node sees {count} GPU(s); "
            f"use --nproc-per-node {count} or fewer"
        )
    return torch.device("cuda", local_rank)


@contextmanager
def process_group(device_spec: str) -> Iterator[Distributed]:
    """This process's Distributed context: joins torchrun's group when launched by it and leaves it on exit.

    A group that is already initialised (by the caller's own code) is used as it is and left open.
    """
    if not launched_by_torchrun() and not dist.is_initialized():
        yield Distributed(device=resolve_device(device_spec))
        return
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
    else:
        rank, world, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK", 0)
        if world < 1 or rank >= world:
            raise ConfigError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent; launch with torchrun")
    device = rank_device(device_spec, local_rank, world)
    if world == 1 and not dist.is_initialized():
        yield Distributed(device=device)  # torchrun --nproc-per-node 1: nothing to coordinate
        return
    owned = not dist.is_initialized()
    if owned:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise ConfigError(f"RANK and WORLD_SIZE are set but {name} is not; launch with torchrun")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
            raise DiptychError(
                f"could not join the {backend} process group at {where} as rank {rank} of {world} ({first}); "
                "start every node with the same torchrun command and rendezvous options"
            ) from None
    try:
        host = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        yield Distributed(rank, world, local_rank, device, host)
        if owned:
            dist.barrier()  # leave together: no process tears its connections down while another still uses them
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def check_global_batch(batch_size: int, world_size: int, accum_steps: int, dataset_size: int) -> int:
    """The per-process batch of one step; --batch-size is global and must split evenly over processes and micro-steps."""
    parts = world_size * accum_steps
    if batch_size % parts:
        fixed = max(parts, round(batch_size / parts) * parts)
        raise ConfigError(
            f"--batch-size {batch_size} is the global batch and must be divisible by {world_size} process(es) x "
            f"--accum-steps {accum_steps} = {parts}; use --batch-size {fixed}"
        )
    if parts > 1 and dataset_size < batch_size:
        raise ConfigError(
            f"--batch-size {batch_size} is larger than the {dataset_size} training pairs; with several processes or "
            "--accum-steps an epoch holds only full global batches, so use a smaller --batch-size"
        )
    return batch_size // world_size


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields (index, epoch_seed) from a per-epoch permutation fixed by the seed, sharded over ranks; can start
    mid-epoch.

    Step k of an epoch uses permutation[k*B:(k+1)*B] for the global batch B, and rank r takes the r-th of its
    world_size equal slices, so the processes together see exactly the samples a single process with batch B sees.
    With drop_last, an incomplete final global batch is left out (the next epoch's permutation differs).
    """

    def __init__(
        self,
        size: int,
        seed: int,
        shuffle: bool = True,
        *,
        batch_size: int = 1,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0

    @property
    def steps_per_epoch(self) -> int:
        """Global batches in an epoch."""
        full, rest = divmod(self.size, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and skip its first `start` global batches."""
        self.epoch = epoch
        self.start = start

    def epoch_seed(self) -> int:
        """The seed that fixes this epoch's order and augmentations."""
        return self.seed * 1_000_003 + self.epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.epoch_seed())
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        seed = self.epoch_seed()
        per_rank = self.batch_size // self.world_size
        for step in range(self.start, self.steps_per_epoch):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            for index in batch[self.rank * per_rank : (self.rank + 1) * per_rank] if self.world_size > 1 else batch:
                yield index, seed

    def __len__(self) -> int:
        if not self.drop_last:  # one process: the last global batch may be short
            return max(0, self.size - self.start * self.batch_size)
        return (self.steps_per_epoch - self.start) * (self.batch_size // self.world_size)


def prepare_networks(networks: dict[str, nn.Module], ctx: Distributed) -> list[str]:
    """Convert batch norm to SyncBatchNorm in place for CUDA multi-process runs; return the names converted.

    Parameters and buffers are kept (same objects, same state_dict keys), so optimisers and checkpoints are
    unaffected. On CPU (gloo) SyncBatchNorm does not run; batch statistics stay per process there.
    """
    converted = []
    if not ctx.enabled or ctx.device.type != "cuda":
        return converted
    for name, module in networks.items():
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
            out = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            # Our networks are never a bare batch-norm layer, so conversion happens inside the same module object.
            assert out is module, "convert_sync_batchnorm replaced a whole network"
            converted.append(name)
    return converted


def wrap(module: nn.Module, ctx: Distributed, *, find_unused_parameters: bool = False) -> nn.Module:
    """DistributedDataParallel around a network for a multi-process run (the module itself otherwise).

    Buffer broadcasting before every forward pass is off: the discriminator runs several forward passes per step, and re-broadcasting batch-norm
    running statistics in place between them breaks autograd; with SyncBatchNorm they agree anyway, and otherwise
    (CPU) rank 0's statistics are the ones checkpointed and loaded by every rank on resume.
    """
    if not ctx.enabled:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # Newer torch names the option forward_sync_buffers (buffers are still copied from rank 0 once, at wrapping).
    sync_option = "forward_sync_buffers" if "forward_sync_buffers" in _DDP_OPTIONS else "broadcast_buffers"
    return DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters, **{sync_option: False}
    )


def no_sync(module: nn.Module, skip: bool) -> AbstractContextManager[Any]:
    """DDP's no_sync (gradients accumulate locally, all-reduced on the next synchronised backward) when `skip`."""
    if skip and isinstance(module, DistributedDataParallel):
        return module.no_sync()
    return nullcontext()
