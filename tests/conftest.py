"""Shared test fixtures: no network, small real-photo datasets, tiny configs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from diptych.config import RunConfig
from diptych.data.io import write_image
from diptych.data.samples import sample_photo

LOOPBACK = ("127.0.0.1", "::1", "localhost")
SRC = str(Path(__file__).resolve().parents[1] / "src")
# Variables of the caller's environment that change what diptych does (torchrun's, the dataset server): a suite
# run inside a torchrun job, or by someone with their own server set, must behave as anywhere else.
CALLER_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "DIPTYCH_DATASETS_URL",
)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the network: any connection beyond this machine fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        if self.family in (socket.AF_INET, socket.AF_INET6) and (
            not isinstance(address, tuple) or address[0] not in LOOPBACK
        ):
            raise RuntimeError(f"tests must not open network connections (tried {address!r})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _small_threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_caller_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see a plain process, whatever environment started the suite."""
    for name in CALLER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def default_stop_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM handled as in a process started from a terminal, even when the suite was started with
    them ignored (`nohup make test`, `make test &`)."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _default_signal_dispositions() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def start_cli(args: list[str | Path], launcher: list[str] | None = None, **popen: object) -> subprocess.Popen[str]:
    """Start `python [LAUNCHER] -m diptych ARGS` from this checkout as a terminal would: default Ctrl-C and SIGTERM
    handling and none of the caller's variables, whatever this test process inherited."""
    env = {k: v for k, v in os.environ.items() if k not in CALLER_VARIABLES}
    env.update(PYTHONPATH=SRC, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    return subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, *(launcher or []), "-m", "diptych", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signal_dispositions,
        **popen,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_two_ranks(rank_main: Callable[..., None], *args: object) -> None:
    """Run rank_main(rank, port, *args) in two spawned processes that form a gloo group on 127.0.0.1."""
    import torch.multiprocessing as mp

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(rank_main, args=(free_port(), *args), nprocs=2, join=True)


def photo_crops(name: str, size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """Random size x size crops of a bundled photo (HxWx3 uint8)."""
    photo = sample_photo(name)
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    out = []
    for _ in range(count):
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        out.append(np.ascontiguousarray(photo[y : y + size, x : x + size]))
    return out


def photo_batch(size: int, count: int) -> dict[str, torch.Tensor]:
    """A training batch of `count` real crops: astronaut as A, coffee as B, in [-1, 1]."""
    from diptych.data.io import to_tensor

    a, b = photo_crops("astronaut", size, count), photo_crops("coffee", size, count, seed=1)
    return {"A": torch.stack([to_tensor(x) for x in a]), "B": torch.stack([to_tensor(x) for x in b])}


def record_channels_last(networks: dict[str, torch.nn.Module]) -> dict[str, list[bool]]:
    """Per network, whether each image it is called with from now on is channels-last (forward pre-hooks)."""
    seen: dict[str, list[bool]] = {name: [] for name in networks}
    for name, net in networks.items():
        net.register_forward_pre_hook(
            lambda _, args, name=name: seen[name].append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
    return seen


def write_aligned(root: Path, pairs: list[tuple[np.ndarray, np.ndarray]], prefix: str = "img") -> Path:
    """Write A|B side-by-side images into root (pix2pix's aligned layout)."""
    for i, (a, b) in enumerate(pairs):
        write_image(root / f"{prefix}_{i:03d}.png", np.concatenate([a, b], axis=1))
    return root


def write_folders(root: Path, pairs: list[tuple[np.ndarray, np.ndarray]], prefix: str = "img") -> Path:
    """Write pairs into root/A and root/B with matching names."""
    for i, (a, b) in enumerate(pairs):
        write_image(root / "A" / f"{prefix}_{i:03d}.png", a)
        write_image(root / "B" / f"{prefix}_{i:03d}.png", b)
    return root


@pytest.fixture
def aligned_dataset(tmp_path: Path) -> Path:
    """Eight aligned 64x64 pairs: A = photo crop, B = its colour inversion."""
    crops = photo_crops("astronaut", 64, 8)
    return write_aligned(tmp_path / "aligned", [(c, 255 - c) for c in crops])


@pytest.fixture
def folders_dataset(tmp_path: Path) -> Path:
    """Eight 64x64 pairs in A/ and B/: A = grayscale (1 channel), B = colour photo crop."""
    crops = photo_crops("coffee", 64, 8)
    pairs = [(np.round(c.mean(axis=2, keepdims=True)).astype(np.uint8), c) for c in crops]
    return write_folders(tmp_path / "folders", pairs)


# tiny_config's networks and crops as command-line options.
TINY_FLAGS = [
    "--depth", "4", "--ngf", "8", "--ndf", "8", "--n-layers", "2",
    "--preprocess", "crop", "--crop-size", "32", "--workers", "0", "--no-progress",
]  # fmt: skip


def logged_steps(run_dir: Path) -> list[int]:
    """The steps of log.jsonl's complete lines (none before the run writes it)."""
    log = run_dir / "log.jsonl"
    steps = []
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            continue  # torn by a kill mid-write
    return steps


# Float results stored in a fixture on one CPU differ in their last bits on another (oneDNN picks its kernels by
# instruction set: AVX-512, AMX): comparisons against such fixtures allow this much. Weights measured 7e-8 apart
# between two CPUs; a lost optimiser state or a skipped step moves them by about the learning rate (2e-4).
ACROSS_CPUS = 2e-6
TIMING_KEYS = ("time_s", "cpu_s")  # what log.jsonl records that differs between otherwise identical runs


def untimed(record: dict) -> dict:
    """A log.jsonl record without its timings, for comparing two runs' logs."""
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}


def untimed_log(run_dir: Path) -> list[dict]:
    """A run's log.jsonl records, without their timings."""
    return [untimed(json.loads(x)) for x in (run_dir / "log.jsonl").read_text().splitlines()]


def dead_pid() -> int:
    """The process id of a process that has ended (as one killed while writing a file has)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def tiny_config(root: Path, recipe: str = "pix2pix", **train: object) -> RunConfig:
    """A configuration small enough to train in a second on CPU: the recipe's defaults, then these sizes and the
    given options (fields of the recipe's section or of the train section)."""
    config = RunConfig().use_recipe(recipe)
    config.generator.depth, config.generator.ngf = 4, 8
    config.discriminator.ndf, config.discriminator.n_layers = 8, 2
    config.data.root = str(root)
    config.data.preprocess, config.data.crop_size, config.data.load_size = "crop", 32, 32
    config.data.workers = 0
    config.train.epochs, config.train.epochs_decay = 2, 2
    config.train.log_every = 1
    for key, value in train.items():
        setattr(config.method if hasattr(config.method, key) else config.train, key, value)
    return config


def checkpoint_weights(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a run's latest checkpoint, keyed `<file name>.<tensor name>`."""
    from safetensors.torch import load_file

    from diptych.checkpoint import resolve_checkpoint

    folder = resolve_checkpoint(run)
    return {f"{f.name}.{k}": v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def straight_and_resumed(config: Callable[[int], RunConfig], root: Path, steps: int, half: int) -> tuple[Path, Path]:
    """Train `steps` steps straight through, and `half` steps then resumed to `steps`; the two run folders."""
    from diptych.train import resume_config, train

    train(config(steps), root / "straight", progress=False)
    train(config(half), root / "resumed", progress=False)
    train(
        resume_config(root / "resumed", {"train": {"max_steps": steps}}), root / "resumed", resume=True, progress=False
    )
    return root / "straight", root / "resumed"
