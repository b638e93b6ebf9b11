"""A small real learning check: pix2pix learns a deterministic mapping of real photo crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diptych import Translator
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
