"""Exact resume, checkpoint contents and atomic writes."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import random
import shutil
import signal
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from diptych.checkpoint import LATEST_FILE, resolve_checkpoint, save_checkpoint
from diptych.config import RunConfig
from diptych.errors import ConfigError
from diptych.train import Trainer, resume_config, train

from .conftest import TINY_FLAGS, dead_pid, logged_steps, start_cli, tiny_config, untimed_log


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = resolve_checkpoint(run_dir)
    out = {}
    for net in ("generator", "discriminator"):
        out.update({f"{net}.{k}": v for k, v in load_file(ckpt / f"{net}.safetensors").items()})
    return out


@pytest.mark.parametrize(
    ("gan_loss", "workers", "batch", "amx"),
    [("vanilla", 0, 1, False), ("wgangp", 1, 3, False), ("vanilla", 0, 1, True)],
)
def test_resume_matches_straight_run(
    aligned_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gan_loss: str, workers: int, batch: int,
    amx: bool,
) -> None:  # fmt: skip
    """2N steps straight == N steps, stop, resume, N steps: bit-identical weights, same logged losses (amx: in bf16
    with the channels-last weights, images and optimiser state a CPU with AMX trains pix2pix with)."""
    monkeypatch.setattr("diptych.recipes.pix2pix.cpu_has_amx", lambda: amx)

    def config(max_steps: int):
        cfg = tiny_config(aligned_dataset, max_steps=max_steps, gan_loss=gan_loss, seed=7)
        cfg.train.precision = "bf16" if amx else cfg.train.precision
        cfg.data.workers, cfg.data.batch_size = workers, batch
        cfg.generator.depth = 6  # deep enough to have dropout, so the RNG state matters
        cfg.data.preprocess, cfg.data.load_size, cfg.data.crop_size = "resize_and_crop", 72, 64
        cfg.discriminator.norm = "instance" if gan_loss == "wgangp" else "batch"
        cfg.train.epochs, cfg.train.epochs_decay = 1, 2  # the LR decays during the run
        return cfg

    # 8 pairs, batch 3 -> 3 steps an epoch, so step 4 stops mid-epoch.
    n = 4 if batch > 1 else 5
    straight = train(config(2 * n), tmp_path / "straight", progress=False)
    first = train(config(n), tmp_path / "resumed", progress=False)
    assert first.steps == n
    resumed = train(
        resume_config(tmp_path / "resumed", {"train": {"max_steps": 2 * n}}),
        tmp_path / "resumed",
        resume=True,
        progress=False,
    )
    assert straight.steps == resumed.steps == 2 * n
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert untimed_log(tmp_path / "straight") == untimed_log(tmp_path / "resumed")
    state_a = torch.load(resolve_checkpoint(tmp_path / "straight") / "training_state.pt", weights_only=True)
    state_b = torch.load(resolve_checkpoint(tmp_path / "resumed") / "training_state.pt", weights_only=True)
    assert state_a["step"] == state_b["step"] and state_a["epoch"] == state_b["epoch"]
    assert state_a["schedulers"]["generator"]["_last_lr"] == state_b["schedulers"]["generator"]["_last_lr"]


def test_checkpoint_is_self_describing(aligned_dataset: Path, tmp_path: Path) -> None:
    result = train(tiny_config(aligned_dataset, max_steps=2), tmp_path / "run", progress=False)
    ckpt = result.checkpoint
    assert {p.name for p in ckpt.iterdir()} == {
        "config.json",
        "generator.safetensors",
        "discriminator.safetensors",
        "training_state.pt",
        "manifest.json",
    }
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["format_version"] == 3 and manifest["recipe"] == "pix2pix"
    assert manifest["generators"] == {"AtoB": "generator"}
    assert manifest["networks"]["generator"]["file"] == "generator.safetensors"
    assert manifest["networks"]["generator"]["spec"]["kind"] == "generator"
    assert manifest["networks"]["generator"]["spec"]["depth"] == 4
    assert manifest["networks"]["discriminator"]["spec"]["in_channels"] == 6
    domain = {"channels": 3, "sample_type": "uint8", "value_range": None}
    assert manifest["domains"] == {"A": domain, "B": domain}
    with safe_open(str(ckpt / "generator.safetensors"), framework="pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
    stored = json.loads(meta["config"])
    assert stored["generator"]["depth"] == 4 and stored["generator"]["in_channels"] == 3
    assert stored["data"]["sample_type"] == "uint8"
    # Flat parameter names, not the reference's model.model.1.model.3... nesting.
    assert "down.0.conv.weight" in keys and not any(k.startswith("model.") for k in keys)
    assert (tmp_path / "run" / "checkpoints" / LATEST_FILE).read_text() == ckpt.name


def test_keep_last_prunes_old_checkpoints(aligned_dataset: Path, tmp_path: Path) -> None:
    train(tiny_config(aligned_dataset, max_steps=6, save_every=1, keep_last=2), tmp_path / "run", progress=False)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert names == ["step_00000005", "step_00000006"]


def test_crash_during_save_keeps_previous_latest(
    aligned_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while writing a checkpoint leaves LATEST pointing at the previous complete one."""
    trainer = Trainer(tiny_config(aligned_dataset, max_steps=1), tmp_path / "run", progress=False)
    first = trainer.fit().checkpoint
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    import diptych.checkpoint as ckpt_mod

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", boom)
    trainer.step += 1
    with pytest.raises(OSError):
        save_checkpoint(
            trainer.ckpt_root, "step_00000002", trainer.config, trainer.recipe.networks, trainer.training_state()
        )
    assert resolve_checkpoint(tmp_path / "run") == first
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
    assert not (trainer.ckpt_root / "step_00000002").exists()


def test_resume_refuses_architecture_changes(aligned_dataset: Path, tmp_path: Path) -> None:
    train(tiny_config(aligned_dataset, max_steps=1), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="--ngf"):
        resume_config(tmp_path / "run", {"generator": {"ngf": 16}})
    with pytest.raises(ConfigError, match="already has checkpoints"):
        Trainer(tiny_config(aligned_dataset, max_steps=1), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="no checkpoint"):
        Trainer(tiny_config(aligned_dataset, max_steps=1), tmp_path / "empty", resume=True, progress=False)


@pytest.mark.usefixtures("default_stop_signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_at_a_step_boundary_and_resumes_exactly(
    aligned_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    """Ctrl-C or SIGTERM in the middle of a step (after D's update, before G's) still yields an exact resume."""
    from diptych.recipes.pix2pix import Pix2PixRecipe

    def cfg(steps: int):  # type: ignore[no-untyped-def]
        c = tiny_config(aligned_dataset, max_steps=steps, seed=3)
        c.data.workers = 1
        return c

    train(cfg(6), tmp_path / "straight", progress=False)

    real_step = Pix2PixRecipe.train_step
    calls = {"n": 0}

    def interrupted_step(self, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signum)  # arrives while this step is still running
        return real_step(self, batch)

    handler = signal.getsignal(signum)
    monkeypatch.setattr(Pix2PixRecipe, "train_step", interrupted_step)
    result = train(cfg(6), tmp_path / "resumed", progress=False)
    assert result.interrupted and result.steps == 3 and result.signal == signum
    assert resolve_checkpoint(tmp_path / "resumed").name == "step_00000003"
    assert signal.getsignal(signum) is handler  # handler restored
    monkeypatch.setattr(Pix2PixRecipe, "train_step", real_step)
    train(resume_config(tmp_path / "resumed"), tmp_path / "resumed", resume=True, progress=False)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_saves_the_step_it_stopped_at_and_resumes_exactly(aligned_dataset: Path, tmp_path: Path) -> None:
    """`diptych train` sent SIGTERM (docker stop, Kubernetes, Slurm) finishes its step, saves it, says so and exits
    143; resuming then loses no step: the weights equal an uninterrupted run's."""
    run = tmp_path / "run"
    args = ["train", "--data", aligned_dataset, "--run-dir", run, "--max-steps", "100000", "--save-every", "100000"]
    proc = start_cli([*args, "--log-every", "1", "--seed", "3", *TINY_FLAGS])
    deadline = time.monotonic() + 120
    while len(logged_steps(run)) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr and "diptych: SIGTERM: stopping after this step" in stderr
    stopped = logged_steps(run)[-1]
    assert f"stopped by SIGTERM at step {stopped}; saved" in stdout
    assert resolve_checkpoint(run).name == f"step_{stopped:08d}"  # the step it stopped at: no step lost
    longer = {"train": {"max_steps": stopped + 2}}
    train(resume_config(run, longer), tmp_path / "straight", progress=False)
    train(resume_config(run, longer), run, resume=True, progress=False)
    a, b = _weights(tmp_path / "straight"), _weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stale_temporaries_of_killed_saves_are_removed_on_resume(aligned_dataset: Path, tmp_path: Path) -> None:
    """What a save killed mid-write leaves (temporary LATEST, half-written checkpoint folder, a folder moved aside)
    is cleaned up when the run resumes; temporary files of a live process are left alone."""
    run = tmp_path / "run"
    train(tiny_config(aligned_dataset, max_steps=2), run, progress=False)
    ckpts = run / "checkpoints"
    dead, live = dead_pid(), os.getppid()
    (ckpts / f".LATEST.{dead}.tmp").write_text("step_0000")
    (ckpts / f".step_00000003.{dead}.tmp").mkdir()
    (ckpts / f".step_00000003.{dead}.tmp" / "generator.safetensors").write_bytes(b"half")
    (run / f".log.jsonl.{dead}.tmp").write_text('{"step": 1}')
    shutil.copytree(ckpts / "step_00000002", ckpts / f".best.{dead}.old")  # killed while replacing best/
    (ckpts / f".LATEST.{live}.tmp").write_text("another writer's")
    train(resume_config(run, {"train": {"max_steps": 3}}), run, resume=True, progress=False)
    assert sorted(p.name for p in ckpts.iterdir() if p.name.startswith(".")) == [f".LATEST.{live}.tmp"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    assert (ckpts / "best" / "config.json").is_file()  # the folder moved aside is put back
    assert (ckpts / LATEST_FILE).read_text() == "step_00000003"


def _train_until_killed(config_json: str, run_dir: Path) -> None:
    """A child process's training: resume the run if it has a checkpoint, else start it."""
    resume = (run_dir / "checkpoints" / LATEST_FILE).is_file()
    config = resume_config(run_dir) if resume else RunConfig.from_dict(json.loads(config_json)).validate()
    train(config, run_dir, resume=resume, progress=False)


def _wait_until_logged(child: BaseProcess, run_dir: Path, step: int, seconds: float) -> None:
    """Wait until the child logged `step`, ended, or `seconds` passed."""
    deadline = time.monotonic() + seconds
    while child.is_alive() and time.monotonic() < deadline and max(logged_steps(run_dir), default=0) < step:
        time.sleep(0.001)


def _kill_at_a_random_moment(child: BaseProcess, run_dir: Path, rng: random.Random, step_s: float) -> None:
    """SIGKILL a training child during its start-up (one time in five), or else once it logged its next step, a
    random fraction of a step later (in the save that follows, or in the next step); never more than two steps on,
    however fast this machine is now."""
    done = max(logged_steps(run_dir), default=0)
    if rng.random() < 0.2:
        _wait_until_logged(child, run_dir, done + 1, rng.uniform(0.0, 0.1))
    else:
        _wait_until_logged(child, run_dir, done + 1, 120.0)
        _wait_until_logged(child, run_dir, done + 2, rng.uniform(0.0, 1.5) * step_s)
    child.kill()
    child.join()


def test_sigkill_at_random_moments_loses_at_most_one_save_interval(aligned_dataset: Path, tmp_path: Path) -> None:
    """SIGKILL at 20 seeded random moments (many during saves, as one is written every step), resuming after
    each: every resume works, no kill loses more than one save interval, the final weights equal an uninterrupted
    run's, and nothing the killed saves left behind remains."""
    config = tiny_config(aligned_dataset, max_steps=48, save_every=1, seed=5)
    config.train.epochs, config.train.epochs_decay = 3, 3  # 48 steps, the learning rate decaying over the last 24
    straight = copy.deepcopy(config)
    straight.train.save_every = 48  # (when a run saves does not change its weights)
    started = time.perf_counter()
    train(straight, tmp_path / "straight", progress=False)
    step_s = (time.perf_counter() - started) / 48
    run = tmp_path / "run"
    fork = multiprocessing.get_context("fork")  # the child starts in milliseconds, with torch already imported
    rng = random.Random(20)
    for kill in range(1, 21):
        child = fork.Process(target=_train_until_killed, args=(config.to_json(), run))
        child.start()
        _kill_at_a_random_moment(child, run, rng, step_s)
        assert child.exitcode == -signal.SIGKILL, f"run {kill} ended with exit code {child.exitcode} before its kill"
        reached = max(logged_steps(run), default=0)
        latest = run / "checkpoints" / LATEST_FILE
        saved = int(latest.read_text().removeprefix("step_")) if latest.is_file() else 0
        assert reached - saved <= config.train.save_every, f"kill {kill}: trained to step {reached}, saved {saved}"
    child = fork.Process(target=_train_until_killed, args=(config.to_json(), run))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    a, b = _weights(tmp_path / "straight"), _weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not [p for p in run.rglob(".*") if p.name.endswith((".tmp", ".old"))]


def _lrs_by_epoch(run_dir: Path) -> dict[int, float]:
    records = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x]
    return {r["epoch"]: r["lr_generator"] for r in records if "lr_generator" in r}


@pytest.mark.parametrize("policy", ["linear", "cosine", "step"])
def test_resume_with_a_longer_schedule_follows_the_new_curve(
    aligned_dataset: Path, tmp_path: Path, policy: str
) -> None:
    """Training 2+2 epochs, then resuming with --epochs-decay 6, gives the learning rates of a straight 2+6 run."""

    def cfg(decay: int):  # type: ignore[no-untyped-def]
        c = tiny_config(aligned_dataset, lr_policy=policy, lr_step_epochs=2, lr_gamma=0.5, seed=1)
        c.data.batch_size = 4  # 2 steps per epoch
        c.train.epochs, c.train.epochs_decay = 2, decay
        return c

    train(cfg(6), tmp_path / "straight", progress=False)
    train(cfg(2), tmp_path / "longer", progress=False)
    train(
        resume_config(tmp_path / "longer", {"train": {"epochs_decay": 6}}),
        tmp_path / "longer",
        resume=True,
        progress=False,
    )
    straight, longer = _lrs_by_epoch(tmp_path / "straight"), _lrs_by_epoch(tmp_path / "longer")
    assert set(straight) == set(longer) == set(range(8))
    for epoch in range(4, 8):
        assert longer[epoch] == pytest.approx(straight[epoch], rel=1e-9), (epoch, longer, straight)
    assert all(v > 0 for v in longer.values())


def test_max_steps_only_keeps_a_constant_rate(aligned_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(aligned_dataset, max_steps=20)
    cfg.train.epochs, cfg.train.epochs_decay = 0, 0
    train(cfg, tmp_path / "run", progress=False)
    assert set(_lrs_by_epoch(tmp_path / "run").values()) == {cfg.train.lr}


def test_trainers_do_not_share_random_state(aligned_dataset: Path, tmp_path: Path) -> None:
    """Building another trainer (or drawing global random numbers) does not change a trainer's run."""

    def cfg(seed: int):  # type: ignore[no-untyped-def]
        c = tiny_config(aligned_dataset, max_steps=4, seed=seed)
        c.generator.depth = 6  # dropout draws random numbers
        c.data.preprocess, c.data.load_size, c.data.crop_size = "resize_and_crop", 72, 64
        return c

    alone = Trainer(cfg(0), tmp_path / "alone", progress=False).fit()
    a = Trainer(cfg(0), tmp_path / "a", progress=False)
    Trainer(cfg(2), tmp_path / "b", progress=False)
    torch.rand(1000)  # unrelated use of the global generator
    a.fit()
    w1, w2 = _weights(alone.run_dir), _weights(tmp_path / "a")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_too_small_for_the_discriminator_is_refused_before_writing(aligned_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(aligned_dataset, max_steps=1)
    cfg.data.crop_size = cfg.data.load_size = 16
    cfg.discriminator.n_layers = 3
    with pytest.raises(ConfigError, match=r"--crop-size 16 is too small for the 70x70 PatchGAN"):
        Trainer(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_new_run_starts_a_fresh_log_and_resume_survives_a_torn_line(aligned_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 99, "epoch": 9}\n')  # left by a run killed before its first checkpoint
    train(tiny_config(aligned_dataset, max_steps=3), run, progress=False)
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 4, "epo')  # torn by a crash mid-write
    train(resume_config(run, {"train": {"max_steps": 5}, "data": {"workers": 0}}), run, resume=True, progress=False)
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_memory_estimate_is_printed_and_plausible(aligned_dataset: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(aligned_dataset, max_steps=1), tmp_path / "run", progress=False)
    line = trainer.memory_estimate()
    import re

    total = float(re.search(r"about ([\d.]+) GiB", line).group(1))  # type: ignore[union-attr]
    assert 0.3 < total < 1.0 and "activations at 32x32, batch 1" in line
    assert "memory estimate" in trainer.describe()
