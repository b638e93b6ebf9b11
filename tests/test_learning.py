"""A small real learning check: pix2pix learns a deterministic mapping of real photo crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diptych import Translator
from diptych.config import RunConfig
from diptych.data.io import write_image
from diptych.train import train

from .conftest import photo_crops, tiny_config, write_aligned


def target_of(a: np.ndarray) -> np.ndarray:
    """Colour inversion with the channels reversed (RGB -> inverted BGR): pixelwise and deterministic."""
    return np.ascontiguousarray(255 - a[:, :, ::-1])


def test_tiny_pix2pix_beats_identity_on_held_out_photo(tmp_path: Path) -> None:
    train_crops = [c for name in ("astronaut", "rocket", "coffee") for c in photo_crops(name, 48, 8, seed=1)]
    data = write_aligned(tmp_path / "data", [(c, target_of(c)) for c in train_crops])
    cfg = tiny_config(data, max_steps=400, seed=0)
    cfg.generator.ngf = 16
    cfg.data.batch_size, cfg.data.crop_size = 4, 32
    cfg.train.epochs, cfg.train.epochs_decay = 1000, 0
    cfg.train.lr = 1e-3
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.steps == 400

    t = Translator.load(result.run_dir, device="cpu")
    held_out = photo_crops("chelsea", 48, 6, seed=2)  # a photo never seen in training
    model_err = np.mean([np.abs(t(a).astype(float) - target_of(a)).mean() for a in held_out])
    identity_err = np.mean([np.abs(a.astype(float) - target_of(a)).mean() for a in held_out])
    print(f"held-out L1: model {model_err:.2f}, identity {identity_err:.2f}")
    assert model_err < 0.25 * identity_err, (model_err, identity_err)


def warm_tone(a: np.ndarray) -> np.ndarray:
    """Domain B's look: a strong warm tone (red lifted, blue cut), as a photo filter or another camera would give."""
    out = a.astype(np.float32) * np.array([0.8, 0.9, 0.5]) + np.array([70.0, 15.0, 0.0])
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def test_tiny_cyclegan_learns_an_unpaired_tone_shift(tmp_path: Path) -> None:
    """Domain A: plain photo crops; domain B: warm-toned *other* crops (no pairs). After a short training the round
    trip A -> B -> A is much closer to the input than at the start, and G_A's outputs take B's colours."""
    a_crops = [c for name in ("astronaut", "coffee") for c in photo_crops(name, 40, 8, seed=1)]
    b_crops = [warm_tone(c) for name in ("astronaut", "coffee") for c in photo_crops(name, 40, 8, seed=2)]
    data = tmp_path / "data"
    for i, c in enumerate(a_crops):
        write_image(data / "trainA" / f"a{i}.png", c)
    for i, c in enumerate(b_crops):
        write_image(data / "trainB" / f"b{i}.png", c)
    cfg = RunConfig().use_recipe("cyclegan")
    cfg.generator.ngf, cfg.generator.n_blocks = 8, 2
    cfg.discriminator.ndf, cfg.discriminator.n_layers = 8, 2
    cfg.data.root, cfg.data.workers = str(data), 0
    cfg.data.preprocess, cfg.data.crop_size = "crop", 32
    cfg.data.batch_size = 2
    cfg.train.epochs, cfg.train.epochs_decay, cfg.train.max_steps = 1000, 0, 400
    cfg.train.lr, cfg.train.log_every, cfg.train.seed = 5e-4, 25, 0
    result = train(cfg, tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    first, last = log[0]["cycle_A"], np.mean([r["cycle_A"] for r in log[-3:]])  # means over 25 steps
    print(f"cycle_A L1: first {first:.3f}, last {last:.3f}")
    assert last < 0.7 * first, (first, last)

    to_b = Translator.load(result.run_dir, device="cpu", direction="AtoB")
    held_out = photo_crops("astronaut", 40, 6, seed=7) + photo_crops("coffee", 40, 6, seed=7)  # unseen crops
    b_mean = np.mean([c.reshape(-1, 3).mean(0) for c in b_crops], axis=0)
    before = np.abs(np.mean([c.reshape(-1, 3).mean(0) for c in held_out], axis=0) - b_mean).sum()
    after = np.abs(np.mean([to_b(c).reshape(-1, 3).mean(0) for c in held_out], axis=0) - b_mean).sum()
    print(f"distance of the mean colour to domain B's: inputs {before:.1f}, translations {after:.1f}")
    assert after < 0.4 * before, (before, after)
