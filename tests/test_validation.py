"""Validation during training: val_* log records, the best checkpoint, curves.png, TensorBoard, and no side effects."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diptych.checkpoint import resolve_checkpoint
from diptych.config import RunConfig
from diptych.errors import ConfigError
from diptych.evaluate import evaluate
from diptych.metrics.pixel import HIGHER_IS_BETTER
from diptych.train import Trainer, resume_config, train
from diptych.translate import Translator

from .conftest import photo_crops, tiny_config, untimed, write_aligned
from .test_cli import TINY, assert_one_error_line, run_cli

VAL_KEYS = {"val_psnr", "val_ssim", "val_l1", "val_checkerboard"}


@pytest.fixture
def val_root(tmp_path: Path) -> Path:
    """A separate validation folder with a val/ split (and a decoy train/ split that must be ignored)."""
    crops = photo_crops("coffee", 48, 4, seed=11)
    write_aligned(tmp_path / "valset" / "val", [(c, 255 - c) for c in crops[:3]])
    write_aligned(tmp_path / "valset" / "train", [(c, 255 - c) for c in crops[3:]], prefix="decoy")
    return tmp_path / "valset"


def config(
    data: Path,
    *,
    val_root: Path | None = None,
    fraction: float = 0.0,
    every: int = 2,
    metric: str = "psnr",
    **train_opts: Any,
) -> RunConfig:
    cfg = tiny_config(data, **train_opts)
    cfg.validation.root = str(val_root) if val_root else ""
    cfg.validation.fraction = fraction
    cfg.validation.every = every
    cfg.validation.metric = metric
    return cfg


def deep(cfg: RunConfig) -> RunConfig:
    """Depth 6 at 64 px: deep enough for dropout, so any use of the global RNG would show (as in test_resume)."""
    cfg.generator.depth = 6
    cfg.data.preprocess, cfg.data.load_size, cfg.data.crop_size = "resize_and_crop", 72, 64
    cfg.train.seed = 7
    return cfg


def read_log(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def val_records(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in log if any(k.startswith("val_") for k in r)]


def train_records(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [untimed(r) for r in log if not any(k.startswith("val_") for k in r)]


def all_weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = resolve_checkpoint(run)
    return {
        f"{net}.{k}": v
        for net in ("generator", "discriminator")
        for k, v in load_file(ckpt / f"{net}.safetensors").items()
    }


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 100
        assert np.asarray(img.convert("L")).std() > 5  # something is drawn


# ---------------------------------------------------------------------------------------------------------------
# Records, best checkpoint, curves


@pytest.mark.parametrize("metric", ["psnr", "l1", "st_lpips"])
def test_val_data_records_and_best_checkpoint(
    aligned_dataset: Path, val_root: Path, tmp_path: Path, metric: str
) -> None:
    run = tmp_path / "run"
    cfg = config(aligned_dataset, val_root=val_root, every=2, metric=metric, max_steps=5, save_every=1, keep_last=10)
    cfg.train.lr = 2e-3  # visible movement of the validation metrics over 5 steps
    train(cfg, run, progress=False)
    log = read_log(run)
    val = val_records(log)
    assert [r["step"] for r in val] == [2, 4, 5]  # every 2 steps and at the end
    keys = {*VAL_KEYS, f"val_{metric}"}
    for r in val:
        assert set(r) == {"step", "epoch", *keys}
        assert all(math.isfinite(r[k]) for k in keys)
    assert [r["step"] for r in train_records(log)] == [1, 2, 3, 4, 5]
    assert len({r[f"val_{metric}"] for r in val}) == 3  # the scores moved

    key = f"val_{metric}"
    pick = max if HIGHER_IS_BETTER[metric] else min
    best_record = pick(val, key=lambda r: r[key])
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["metric"] == metric and best["step"] == best_record["step"]
    assert best["value"] == pytest.approx(best_record[key], abs=1e-6)

    best_dir = run / "checkpoints" / "best"
    assert {p.name for p in best_dir.iterdir()} == {"config.json", "generator.safetensors", "manifest.json"}
    # The best folder holds the generator as it was at the best step.
    best_weights = load_file(best_dir / "generator.safetensors")
    step_weights = load_file(run / "checkpoints" / f"step_{best['step']:08d}" / "generator.safetensors")
    assert_same_tensors(best_weights, step_weights)
    translator = Translator.load(best_dir, device="cpu")
    out = translator(photo_crops("rocket", 40, 1)[0][:37])
    assert out.shape == (37, 40, 3) and out.dtype == np.uint8
    # `diptych evaluate` of the best checkpoint on the validation split reproduces the selected value.
    ev = evaluate(best_dir, val_root, tmp_path / "ev", phase="val", metrics=[metric], progress=False)
    assert ev.summary["count"] == 3
    assert ev.summary["metrics"][metric]["mean"] == pytest.approx(best["value"], rel=1e-6)

    assert_png(run / "curves.png")


def test_val_fraction_holds_out_pairs(aligned_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    every_pair = sorted(p.stem for p in aligned_dataset.glob("*.png"))
    trainer = Trainer(config(aligned_dataset, fraction=0.25, seed=5), tmp_path / "run", progress=False)
    assert trainer.validator is not None
    held = [p.name for p in trainer.validator.pairs]
    kept = [p.name for p in trainer.dataset.pairs]
    assert len(held) == 2 and len(kept) == 6
    assert not set(held) & set(kept)
    assert sorted(held + kept) == every_pair
    assert trainer.steps_per_epoch == 6
    again = Trainer(config(aligned_dataset, fraction=0.25, seed=5), tmp_path / "run2", progress=False)
    assert [p.name for p in again.validator.pairs] == held  # the split is fixed by the seed
    # Training (two epochs) only ever sees the kept pairs.
    from diptych.recipes.pix2pix import Pix2PixRecipe

    seen: list[str] = []
    real_step = Pix2PixRecipe.train_step

    def recording_step(self: Pix2PixRecipe, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        seen.extend(batch["name"])
        return real_step(self, batch)

    monkeypatch.setattr(Pix2PixRecipe, "train_step", recording_step)
    trainer.config.train.max_steps = 12
    trainer.fit()
    assert len(seen) == 12 and set(seen) == set(kept)


def test_val_data_keeps_every_training_pair(aligned_dataset: Path, val_root: Path, tmp_path: Path) -> None:
    trainer = Trainer(config(aligned_dataset, val_root=val_root), tmp_path / "run", progress=False)
    assert len(trainer.dataset) == 8
    assert sorted(p.name for p in trainer.validator.pairs) == ["img_000", "img_001", "img_002"]
    assert all(p.a_path.parent == val_root / "val" for p in trainer.validator.pairs)


def test_is_better_respects_the_metric_direction(aligned_dataset: Path, val_root: Path, tmp_path: Path) -> None:
    for metric, better, worse in (("psnr", 30.0, 20.0), ("ssim", 0.9, 0.5), ("l1", 0.1, 0.2), ("mse", 0.01, 0.02)):
        trainer = Trainer(config(aligned_dataset, val_root=val_root, metric=metric), tmp_path / metric, progress=False)
        v = trainer.validator
        assert v.is_better(better, worse) and not v.is_better(worse, better), metric
        assert v.is_better(worse, None) and not v.is_better(better, better)
        assert not v.is_better(math.nan, None) and not v.is_better(math.inf if metric == "l1" else -math.inf, worse)


@pytest.mark.parametrize(
    ("flags", "steps"),
    [(["--val-fraction", "0.25", "--val-every", "2"], [2, 3]), (["--val-data", "VAL", "--val-metric", "l1"], [3])],
    ids=["val-fraction", "val-data"],
)
def test_cli_validation(
    aligned_dataset: Path,
    val_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    steps: list[int],
) -> None:
    run = tmp_path / "run"
    flags = [str(val_root) if f == "VAL" else f for f in flags]
    code, out, err = run_cli(
        ["train", "--data", aligned_dataset, "--run-dir", run, "--max-steps", "3", *TINY, *flags], capsys
    )
    assert code == 0, err
    assert "trained 3 steps" in out
    val = val_records(read_log(run))
    assert [r["step"] for r in val] == steps
    stored = json.loads((run / "config.json").read_text())["validation"]
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["metric"] == stored["metric"]
    pick = max if HIGHER_IS_BETTER[best["metric"]] else min
    assert best["step"] == pick(val, key=lambda r: r[f"val_{best['metric']}"])["step"]
    assert_png(run / "curves.png")
    # The best checkpoint can be evaluated by the CLI; its default output folder is in the run.
    code, _, err = run_cli(
        ["evaluate", run / "checkpoints" / "best", val_root, "--phase", "val", "--no-progress"], capsys
    )
    assert code == 0, err
    assert json.loads((run / "eval" / "val-best" / "metrics.json").read_text())["count"] == 3


# ---------------------------------------------------------------------------------------------------------------
# Validation must not disturb training


def test_validation_does_not_change_the_trajectory(aligned_dataset: Path, val_root: Path, tmp_path: Path) -> None:
    plain = train(deep(config(aligned_dataset, max_steps=4)), tmp_path / "plain", progress=False)
    checked = train(
        deep(config(aligned_dataset, val_root=val_root, every=1, max_steps=4)), tmp_path / "val", progress=False
    )
    assert plain.steps == checked.steps == 4
    assert_same_tensors(all_weights(tmp_path / "plain"), all_weights(tmp_path / "val"))
    log_plain, log_val = read_log(tmp_path / "plain"), read_log(tmp_path / "val")
    assert train_records(log_plain) == train_records(log_val)
    assert [r["step"] for r in val_records(log_val)] == [1, 2, 3, 4] and not val_records(log_plain)


@pytest.mark.parametrize("n", [4, 3], ids=["stop-on-a-validation-step", "stop-between-validations"])
def test_resume_with_validation_matches_straight_run(
    aligned_dataset: Path, val_root: Path, tmp_path: Path, n: int
) -> None:
    def cfg(max_steps: int) -> RunConfig:
        return deep(config(aligned_dataset, val_root=val_root, every=2, max_steps=max_steps))

    train(cfg(8), tmp_path / "straight", progress=False)
    train(cfg(n), tmp_path / "resumed", progress=False)
    best_before = json.loads((tmp_path / "resumed" / "checkpoints" / "best.json").read_text())
    resumed = Trainer(
        resume_config(tmp_path / "resumed", {"train": {"max_steps": 8}}),
        tmp_path / "resumed",
        resume=True,
        progress=False,
    )
    assert resumed.best == best_before  # the best so far survives the restart
    resumed.fit()
    assert_same_tensors(all_weights(tmp_path / "straight"), all_weights(tmp_path / "resumed"))
    log_a, log_b = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert train_records(log_a) == train_records(log_b)
    on_schedule = [{k: v for k, v in r.items()} for r in val_records(log_b) if r["step"] % 2 == 0]
    assert val_records(log_a) == on_schedule
    assert [r["step"] for r in val_records(log_a)] == [2, 4, 6, 8]
    if n % 2 == 0:  # nothing extra was validated: the best checkpoint is the straight run's
        assert val_records(log_a) == val_records(log_b)
        best_a = json.loads((tmp_path / "straight" / "checkpoints" / "best.json").read_text())
        best_b = json.loads((tmp_path / "resumed" / "checkpoints" / "best.json").read_text())
        assert best_a == best_b
        assert_same_tensors(
            load_file(tmp_path / "straight" / "checkpoints" / "best" / "generator.safetensors"),
            load_file(tmp_path / "resumed" / "checkpoints" / "best" / "generator.safetensors"),
        )


# ---------------------------------------------------------------------------------------------------------------
# TensorBoard


def test_tensorboard_holds_losses_learning_rates_and_validation(
    aligned_dataset: Path, val_root: Path, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(config(aligned_dataset, val_root=val_root, every=2, max_steps=4, tensorboard=True), run, progress=False)
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard events file"
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("loss/G_L1", "loss/G_GAN", "loss/D_real", "loss/D_fake", "lr/generator", "lr/discriminator"):
        assert tag in tags["scalars"], tag
    for key in VAL_KEYS:
        assert f"val/{key[4:]}" in tags["scalars"]
    log = read_log(run)
    g_l1 = {r["step"]: r["G_L1"] for r in log if "G_L1" in r}
    assert {e.step: e.value for e in acc.Scalars("loss/G_L1")} == pytest.approx(g_l1, abs=1e-5)
    val = {r["step"]: r["val_psnr"] for r in val_records(log)}
    assert {e.step: e.value for e in acc.Scalars("val/psnr")} == pytest.approx(val, abs=1e-4)
    assert sorted(t for t in tags["images"]) == ["val/0", "val/1", "val/2"]  # one per validation pair (3 < 4)
    shots = acc.Images("val/0")
    assert [s.step for s in shots] == [2, 4]
    assert (shots[-1].width, shots[-1].height) == (3 * 48, 48)  # input | output | target
    assert_png(run / "curves.png")


# ---------------------------------------------------------------------------------------------------------------
# Configuration errors


@pytest.mark.parametrize(("fraction", "message"), [(0.95, "--val-fraction 0.95"), (1.0, "--val-fraction 1.0")])
def test_val_fraction_too_large(aligned_dataset: Path, tmp_path: Path, fraction: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Trainer(config(aligned_dataset, fraction=fraction), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_val_fraction_of_a_single_pair(tmp_path: Path) -> None:
    data = write_aligned(tmp_path / "one", [(c, 255 - c) for c in photo_crops("coffee", 32, 1)])
    with pytest.raises(ConfigError, match="leaves no training pairs out of 1"):
        Trainer(config(data, fraction=0.1), tmp_path / "run", progress=False)


def test_val_data_and_val_fraction_together(aligned_dataset: Path, val_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--val-data.*--val-fraction"):
        Trainer(config(aligned_dataset, val_root=val_root, fraction=0.25), tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--val-data", "VAL", "--val-fraction", "0.25"], ["--val-data", "--val-fraction"]),
        (["--val-fraction", "0.95"], ["--val-fraction 0.95"]),
        (["--val-data", "MISSING"], ["MISSING"]),
    ],
    ids=["both", "too-large", "missing-folder"],
)
def test_cli_validation_errors(
    aligned_dataset: Path,
    val_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    named: list[str],
) -> None:
    missing = tmp_path / "no_such_val"
    swap = {"VAL": str(val_root), "MISSING": str(missing)}
    flags = [swap.get(f, f) for f in flags]
    named = [swap.get(n, n) for n in named]
    run = tmp_path / "run"
    code, out, err = run_cli(
        ["train", "--data", aligned_dataset, "--run-dir", run, "--max-steps", "2", *TINY, *flags], capsys
    )
    assert code == 1 and out == ""
    assert_one_error_line(err, *named)
    assert not (run / "checkpoints").exists()
