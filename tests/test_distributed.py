"""Multi-process training (DDP over gloo on 127.0.0.1), gradient accumulation and the sharded sampler."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from diptych.checkpoint import resolve_checkpoint
from diptych.cli import main
from diptych.config import RunConfig
from diptych.distributed import Distributed, EpochSampler, check_global_batch, process_group, rank_device
from diptych.errors import ConfigError
from diptych.train import Trainer, train

from .conftest import (
    TINY_FLAGS,
    free_port,
    logged_steps,
    photo_crops,
    spawn_two_ranks,
    start_cli,
    tiny_config,
    untimed_log,
    write_aligned,
)

STEPS = 4  # per half; the long runs take 2 * STEPS (two epochs of 8 pairs in batches of 4)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _config(root: Path, max_steps: int, batch: int = 4, accum: int = 1) -> RunConfig:
    """Instance norm everywhere and no dropout (depth 4), fp32: a split batch must give the whole batch's gradient."""
    cfg = tiny_config(root, max_steps=max_steps, seed=3, accum_steps=accum, precision="fp32")
    cfg.generator.norm = cfg.discriminator.norm = "instance"
    cfg.data.batch_size = batch
    cfg.train.epochs, cfg.train.epochs_decay = 2, 2  # the learning rate decays during the second half
    cfg.train.lr = 1e-3
    cfg.train.ema = 0.9  # each process averages its (identical) bare generator: the averages agree too
    cfg.train.save_every = STEPS
    cfg.train.keep_last = 0
    return cfg


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = resolve_checkpoint(run_dir)
    out = {}
    for net in ("generator", "discriminator", "generator.ema"):
        out.update({f"{net}.{k}": v for k, v in load_file(ckpt / f"{net}.safetensors").items()})
    return out


def _log(run_dir: Path) -> list[dict[str, float]]:
    return untimed_log(run_dir)


def _rank_main(rank: int, port: int, data: str, out: str) -> None:
    """One of two processes: join the group, run the trainings the tests compare, dump this rank's parameters."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        with process_group("cpu") as ctx:  # the group that is already there
            assert (ctx.rank, ctx.world_size) == (rank, 2)
            trainer = Trainer(_config(Path(data), 2 * STEPS), Path(out) / "ddp", progress=False, dist=ctx)
            trainer.fit()
        networks = {**trainer.recipe.networks, **{f"{n}.ema": m for n, m in trainer.averaged.items()}}
        params = {f"{n}.{k}": p.detach() for n, m in networks.items() for k, p in m.named_parameters()}
        torch.save(params, Path(out) / f"rank{rank}.pt")
        train(_config(Path(data), STEPS), Path(out) / "ddp_half", progress=False)
        train(_config(Path(data), 2 * STEPS, accum=2), Path(out) / "ddp_accum", progress=False)
    finally:
        dist.destroy_process_group()


def _ctx(rank: int) -> Distributed:
    return Distributed(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 32x32 aligned pairs (two global batches of 4)."""
    root = tmp_path_factory.mktemp("ddp_data")
    return write_aligned(root, [(c, 255 - c) for c in photo_crops("astronaut", 32, 8)])


@pytest.fixture(scope="module")
def two_process_runs(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs made by two gloo processes (spawned once for all the tests below)."""
    out = tmp_path_factory.mktemp("ddp_runs")
    spawn_two_ranks(_rank_main, str(dataset), str(out))
    return out


def test_ranks_hold_identical_parameters(two_process_runs: Path) -> None:
    r0, r1 = torch.load(two_process_runs / "rank0.pt"), torch.load(two_process_runs / "rank1.pt")
    assert r0.keys() == r1.keys() and len(r0) > 10 and any(k.startswith("generator.ema.") for k in r0)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key


def test_two_processes_match_one_with_the_same_global_batch(
    two_process_runs: Path, dataset: Path, tmp_path: Path
) -> None:
    single = train(_config(dataset, 2 * STEPS), tmp_path / "single", progress=False)
    a, b = _weights(single.run_dir), _weights(two_process_runs / "ddp")
    assert a.keys() == b.keys()
    moved = max(float((a[k] - _weights(two_process_runs / "ddp_half")[k]).abs().max()) for k in a)
    assert moved > 1e-3  # the second half of the run changed the weights, so agreement below means something
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=5e-5, msg=key)
    # The logged losses are the global batch's means, as a single process logs them.
    for x, y in zip(_log(single.run_dir), _log(two_process_runs / "ddp"), strict=True):
        assert x.keys() == y.keys() and x["step"] == y["step"] and x["lr_generator"] == y["lr_generator"]
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-3, abs=1e-4), k


def test_accumulation_under_ddp_matches_one_process(two_process_runs: Path, dataset: Path, tmp_path: Path) -> None:
    """Global batch 4 = 2 processes x 2 micro-batches of 1 (no_sync on the first) == one process, batch 4."""
    single = train(_config(dataset, 2 * STEPS), tmp_path / "single", progress=False)
    a, b = _weights(single.run_dir), _weights(two_process_runs / "ddp_accum")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=5e-5, msg=key)


def test_accumulation_equals_the_big_batch(dataset: Path, tmp_path: Path) -> None:
    """One process: batch 2 in 2 micro-batches of 1 == batch 2 at once (instance norm), to float tolerance."""
    whole = train(_config(dataset, 6, batch=2), tmp_path / "whole", progress=False)
    split = train(_config(dataset, 6, batch=2, accum=2), tmp_path / "split", progress=False)
    a, b = _weights(whole.run_dir), _weights(split.run_dir)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=5e-5, msg=key)
    for x, y in zip(_log(whole.run_dir), _log(split.run_dir), strict=True):
        assert x["G_L1"] == pytest.approx(y["G_L1"], rel=1e-4)


def test_torchrun_resume_continues_exactly(two_process_runs: Path, tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m diptych train --resume` continues a 2-process run bit-identically."""
    run = tmp_path / "resumed"
    shutil.copytree(two_process_runs / "ddp_half", run)
    state = torch.load(resolve_checkpoint(run) / "training_state.pt", weights_only=True)
    assert state["world_size"] == 2 and not torch.equal(*state["rng_cpu_ranks"])  # each rank's own stream
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    cmd += ["--master-port", str(free_port()), "-m", "diptych", "train", "--resume", str(run)]
    cmd += ["--max-steps", str(2 * STEPS), "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 8 steps") == 1  # rank 0 alone reports
    a, b = _weights(two_process_runs / "ddp"), _weights(run)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _log(two_process_runs / "ddp") == _log(run)


def test_torchrun_sigterm_stops_every_rank_at_the_same_step_and_saves_it(dataset: Path, tmp_path: Path) -> None:
    """SIGTERM to torchrun (as a scheduler sends it) reaches every rank; they agree on the step, rank 0 saves it."""
    run = tmp_path / "run"
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    launcher += ["--master-port", str(free_port())]
    args = ["train", "--device", "cpu", "--data", dataset, "--run-dir", run, "--batch-size", "2", "--log-every", "1"]
    args += ["--max-steps", "100000", "--save-every", "100000", *TINY_FLAGS]
    proc = start_cli(args, launcher)
    deadline = time.monotonic() + 120
    while len(logged_steps(run)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    stopped = logged_steps(run)[-1]
    assert stdout.count(f"stopped by SIGTERM at step {stopped}; saved") == 1, stderr[-3000:]  # rank 0 alone
    assert resolve_checkpoint(run).name == f"step_{stopped:08d}"
    assert "diptych: error" not in stderr  # no rank waited for another past the step (or failed)


def test_global_batch_must_split_over_processes_and_micro_steps(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(dataset, 2, batch=3)
    with pytest.raises(ConfigError, match=r"--batch-size 3 is the global batch .* 2 process\(es\) x --accum-steps 1"):
        Trainer(cfg, tmp_path / "run", progress=False, dist=_ctx(0))
    with pytest.raises(ConfigError, match="divisible by 2 process"):
        check_global_batch(6, 2, 2, 100)
    assert check_global_batch(8, 2, 2, 100) == 4
    with pytest.raises(ConfigError, match="larger than the 8 training pairs"):
        check_global_batch(16, 2, 1, 8)
    run = tmp_path / "cli"
    assert (
        main(["train", "--data", str(dataset), "--batch-size", "3", "--accum-steps", "2", "--run-dir", str(run)]) == 1
    )
    assert "--batch-size 3 must be divisible by --accum-steps 2" in capsys.readouterr().err
    assert not run.exists()


def test_sampler_shards_each_global_batch() -> None:
    """Two ranks together draw each step's global batch of a single process; resuming mid-epoch skips whole steps."""
    single = list(EpochSampler(10, seed=1, batch_size=4, drop_last=True))
    ranks = [list(EpochSampler(10, seed=1, batch_size=4, rank=r, world_size=2, drop_last=True)) for r in (0, 1)]
    assert len(single) == 8 and all(len(r) == 4 for r in ranks)  # the incomplete third batch is dropped
    for step in range(2):
        assert ranks[0][2 * step : 2 * step + 2] + ranks[1][2 * step : 2 * step + 2] == single[4 * step : 4 * step + 4]
    assert not {i for i, _ in ranks[0]} & {i for i, _ in ranks[1]}
    late = EpochSampler(10, seed=1, batch_size=4, rank=1, world_size=2, drop_last=True)
    late.set_epoch(0, start=1)
    assert list(late) == ranks[1][2:] and len(late) == 2
    plain = EpochSampler(10, seed=1, batch_size=4)  # one process keeps the short last batch
    assert len(list(plain)) == len(plain) == 10


def test_process_device_rules() -> None:
    assert rank_device("cpu", 1, 2) == torch.device("cpu")
    with pytest.raises(ConfigError, match="cuda:0 would put every torchrun process on one GPU"):
        rank_device("cuda:0", 1, 2)


def test_run_dir_is_required_under_torchrun(
    dataset: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--data", str(dataset), "--max-steps", "1"]) == 1
    assert "--run-dir is required under torchrun" in capsys.readouterr().err
    # The other ranks meet the same configuration error: only rank 0 prints it (one line, not one per process).
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "--data", str(dataset), "--max-steps", "1"]) == 1
    assert capsys.readouterr().err == ""


def test_errors_particular_to_a_process_name_its_rank(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from diptych.cli import _print_error

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    _print_error("training diverged", same_on_every_process=False)
    _print_error("--lr must be > 0", same_on_every_process=True)
    assert capsys.readouterr().err == "diptych: error (rank 3): training diverged\n"


def test_batch_norm_becomes_sync_batch_norm_for_cuda_processes_only() -> None:
    """The reference's DDP bug (#1709) inverted: batch norm is converted under CUDA DDP, in place, keeping names."""
    from diptych.distributed import prepare_networks
    from diptych.nets import PatchDiscriminator, UNetGenerator

    def nets(norm: str) -> dict[str, torch.nn.Module]:
        return {
            "generator": UNetGenerator(3, 3, depth=4, ngf=8, norm=norm),
            "discriminator": PatchDiscriminator(6, 8, 2, norm),
        }

    cuda_ranks = Distributed(rank=0, world_size=2, device=torch.device("cuda", 0))
    networks = nets("batch")
    names = {k: list(m.state_dict()) for k, m in networks.items()}
    params = {k: [id(p) for p in m.parameters()] for k, m in networks.items()}
    assert prepare_networks(networks, cuda_ranks) == ["generator", "discriminator"]
    for key, module in networks.items():
        layers = list(module.modules())
        assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in layers)
        assert not any(type(m) is torch.nn.BatchNorm2d for m in layers)
        assert list(module.state_dict()) == names[key]  # checkpoints load anywhere
        assert [id(p) for p in module.parameters()] == params[key]  # the optimisers' parameters
    assert prepare_networks(nets("instance"), cuda_ranks) == []
    assert prepare_networks(nets("batch"), _ctx(0)) == []  # gloo on CPU: SyncBatchNorm does not run there
    assert prepare_networks(nets("batch"), Distributed(device=torch.device("cuda", 0))) == []  # one process
