"""The pix2pixHD recipe: learning, the staged schedule (frozen global generator), resume, tiling, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diptych import Translator
from diptych.checkpoint import resolve_checkpoint
from diptych.config import RunConfig
from diptych.errors import ConfigError
from diptych.train import Trainer, resume_config, train

from .conftest import photo_crops, write_aligned


def hd_config(root: Path, n_local: int = 1, **train_fields: object) -> RunConfig:
    cfg = RunConfig().use_recipe("pix2pixhd")
    g = cfg.generator
    g.ngf, g.n_local, g.n_down_global, g.n_blocks_global, g.n_blocks_local = 8, n_local, 2, 2, 1
    cfg.discriminator.ndf, cfg.discriminator.n_layers = 8, 2
    cfg.data.root, cfg.data.workers = str(root), 0
    cfg.data.preprocess, cfg.data.crop_size, cfg.data.load_size = "crop", 32, 32
    cfg.train.epochs, cfg.train.epochs_decay, cfg.train.log_every = 1000, 0, 10
    for key, value in train_fields.items():
        setattr(cfg.method if hasattr(cfg.method, key) else cfg.train, key, value)
    return cfg


def target_of(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(255 - a[:, :, ::-1])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    crops = [c for name in ("astronaut", "rocket", "coffee") for c in photo_crops(name, 48, 8, seed=1)]
    return write_aligned(tmp_path_factory.mktemp("hd") / "data", [(c, target_of(c)) for c in crops])


def test_hd_recipe_learns(data: Path, tmp_path: Path) -> None:
    """LSGAN + feature matching + an L1 term (standing in for the VGG loss, whose weights tests cannot have)
    on a deterministic mapping of real photo crops: far better than the identity on a photo never seen.
    (With GAN + FM alone, 400 steps of this tiny model do not beat the identity: the content term matters.)"""
    cfg = hd_config(data, max_steps=400, lr=1e-3, lambda_l1=100.0)
    cfg.data.batch_size = 4
    # Instance norm discards each image's mean brightness, which this absolute colour mapping needs.
    cfg.generator.norm = "batch"
    result = train(cfg, tmp_path / "run", progress=False)
    t = Translator.load(result.run_dir, device="cpu")
    held_out = photo_crops("chelsea", 48, 6, seed=2)
    model_err = np.mean([np.abs(t(a).astype(float) - target_of(a)).mean() for a in held_out])
    identity_err = np.mean([np.abs(a.astype(float) - target_of(a)).mean() for a in held_out])
    print(f"held-out L1: model {model_err:.2f}, identity {identity_err:.2f}")
    assert model_err < 0.5 * identity_err, (model_err, identity_err)
    records = (result.run_dir / "log.jsonl").read_text()
    assert '"G_FM"' in records and '"D_real"' in records


def test_staged_schedule_freezes_then_trains_the_global_generator(data: Path, tmp_path: Path) -> None:
    stage1 = train(hd_config(data, n_local=0, max_steps=2), tmp_path / "stage1", progress=False)
    g1 = load_file(resolve_checkpoint(stage1.run_dir) / "generator.safetensors")

    def global_weights(run: Path) -> dict[str, torch.Tensor]:
        g = load_file(resolve_checkpoint(run) / "generator.safetensors")
        return {k: v for k, v in g.items() if k.startswith("global_generator.") and ".head." not in k}

    def stage2(steps: int, fix: int) -> RunConfig:
        cfg = hd_config(data, max_steps=steps, init_global=str(stage1.run_dir), fix_global_steps=fix)
        cfg.generator.ngf = 4  # global width = ngf * 2**n_local = 8, stage 1's
        return cfg

    frozen = train(stage2(3, 3), tmp_path / "s2a", progress=False)
    for key, value in global_weights(frozen.run_dir).items():
        assert torch.equal(value, g1[key]), key  # loaded from stage 1 and untouched while frozen
    joint = train(stage2(3, 1), tmp_path / "s2b", progress=False)
    changed = [k for k, v in global_weights(joint.run_dir).items() if not torch.equal(v, g1[k])]
    assert changed  # unfrozen after step 1


def test_hd_resume_is_exact(data: Path, tmp_path: Path) -> None:
    def cfg(steps: int) -> RunConfig:
        return hd_config(data, max_steps=steps, seed=4)

    train(cfg(6), tmp_path / "straight", progress=False)
    train(cfg(3), tmp_path / "resumed", progress=False)
    train(
        resume_config(tmp_path / "resumed", {"train": {"max_steps": 6}}),
        tmp_path / "resumed",
        resume=True,
        progress=False,
    )
    for net in ("generator", "discriminator"):
        a = load_file(resolve_checkpoint(tmp_path / "straight") / f"{net}.safetensors")
        b = load_file(resolve_checkpoint(tmp_path / "resumed") / f"{net}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_hd_errors(data: Path, tmp_path: Path) -> None:
    cfg = hd_config(data, max_steps=1)
    cfg.use_generator("unet")
    with pytest.raises(ConfigError, match="needs --arch hd"):
        cfg.validate()
    with pytest.raises(ConfigError, match="--vgg-weights"):
        hd_config(data, max_steps=1, lambda_vgg=10.0).validate()
    pix = RunConfig()
    pix.discriminator.num_d = 2
    with pytest.raises(ConfigError, match="use --recipe pix2pixhd"):
        pix.validate()
    unet_run = tmp_path / "unet"
    from .conftest import tiny_config

    train(tiny_config(data, max_steps=1), unet_run, progress=False)
    with pytest.raises(ConfigError, match="not an hd generator"):
        Trainer(hd_config(data, max_steps=1, init_global=str(unet_run)), tmp_path / "x", progress=False)
    # A stage 1 with another norm: the error names the setting to repeat, not only the weights' names.
    stage1 = train(hd_config(data, n_local=0, max_steps=1), tmp_path / "stage1", progress=False)
    stage2 = hd_config(data, max_steps=1, init_global=str(stage1.run_dir))
    stage2.generator.ngf, stage2.generator.norm = 4, "batch"
    with pytest.raises(ConfigError, match=r"needs --ngf 4 and stage 1's --g-norm instance$"):
        Trainer(stage2, tmp_path / "y", progress=False)


def test_gradient_checkpointing_gives_the_same_weights(data: Path, tmp_path: Path) -> None:
    plain = train(hd_config(data, n_local=0, max_steps=2, seed=5), tmp_path / "plain", progress=False)
    ckpt = train(
        hd_config(data, n_local=0, max_steps=2, seed=5, grad_checkpoint=True), tmp_path / "ckpt", progress=False
    )
    a = load_file(resolve_checkpoint(plain.run_dir) / "generator.safetensors")
    b = load_file(resolve_checkpoint(ckpt.run_dir) / "generator.safetensors")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


@pytest.mark.parametrize("recipe", ["pix2pix", "pix2pixhd"])
def test_bf16_autocast_trains_with_fp32_weights(data: Path, tmp_path: Path, recipe: str) -> None:
    from .conftest import tiny_config

    cfg = hd_config(data, max_steps=3) if recipe == "pix2pixhd" else tiny_config(data, max_steps=3)
    cfg.train.precision = "bf16"
    result = train(cfg, tmp_path / "bf16", progress=False)
    weights = load_file(resolve_checkpoint(result.run_dir) / "generator.safetensors")
    assert all(v.dtype in (torch.float32, torch.int64) for v in weights.values())  # state stays fp32
    import json

    records = [json.loads(x) for x in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["G_L1"]) for r in records)
    t = Translator.load(result.run_dir, device="cpu")
    assert t(photo_crops("coffee", 40, 1)[0]).shape == (40, 40, 3)


def test_stage_two_resumes_after_stage_one_moved(data: Path, tmp_path: Path) -> None:
    stage1 = train(hd_config(data, n_local=0, max_steps=1), tmp_path / "stage1", progress=False)
    cfg = hd_config(data, max_steps=2, init_global=str(stage1.run_dir))
    cfg.generator.ngf = 4
    train(cfg, tmp_path / "stage2", progress=False)
    stage1.run_dir.rename(tmp_path / "moved")
    resumed = train(
        resume_config(tmp_path / "stage2", {"train": {"max_steps": 3}}),
        tmp_path / "stage2",
        resume=True,
        progress=False,
    )
    assert resumed.steps == 3


def test_crops_too_small_for_the_coarsest_discriminator_scale_are_refused(data: Path, tmp_path: Path) -> None:
    """32 px crops suit one 70x70 PatchGAN but not its copy on the 16 px half-resolution image (num_d 2)."""
    cfg = hd_config(data, n_local=0, max_steps=1)
    cfg.discriminator.n_layers = 3
    with pytest.raises(ConfigError, match=r"--crop-size 32 is too small .* coarsest of --num-d 2 scales \(16 px\)"):
        Trainer(cfg, tmp_path / "run", progress=True)
    assert not (tmp_path / "run").exists()
    cfg.discriminator.num_d = 1  # one scale: 32 px is enough for n_layers 3
    Trainer(cfg, tmp_path / "one", progress=False)
