"""`diptych demo`'s dataset and configuration (the demo's training itself is a few CPU minutes: not run here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diptych.data.io import read_image
from diptych.demo import DEMO_TASKS, TEST_PHOTOS, TRAIN_PHOTOS, build_demo_pairs, demo_config


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


@pytest.mark.parametrize(("task", "low", "high"), [("denoise", 19.0, 22.0), ("deblur", 14.0, 30.0)])
def test_restoration_pairs_are_degraded_photos_and_reproducible(
    tmp_path: Path, task: str, low: float, high: float
) -> None:
    first = build_demo_pairs(tmp_path / "a", task, sizes=(64,))
    again = build_demo_pairs(tmp_path / "b", task, sizes=(64,))
    names = sorted(p.name for p in (first / "train" / "A").iterdir())
    assert names == sorted(f"{n}_64.png" for n in TRAIN_PHOTOS)
    assert sorted(p.name for p in (first / "test" / "B").iterdir()) == sorted(f"{n}_64.png" for n in TEST_PHOTOS)
    for name in names:
        a, b = read_image(first / "train" / "A" / name), read_image(first / "train" / "B" / name)
        assert a.shape == b.shape and b.shape[2] == 3
        assert low < _psnr(a, b) < high, (
            name,
            _psnr(a, b),
        )  # sigma 0.1 noise: about 20 dB; a 2 px blur of a 64 px photo: about 17
        assert np.array_equal(a, read_image(again / "train" / "A" / name))


def test_demo_trains_pix2pix_plus_by_default(tmp_path: Path) -> None:
    assert DEMO_TASKS[0] == "denoise"
    config = demo_config(tmp_path, steps=10, crop_size=128, device="cpu")
    assert config.recipe == "pix2pix-plus" and config.train.ema > 0 and config.generator.upsample == "bilinear"
    assert demo_config(tmp_path, 10, 128, "cpu", recipe="pix2pix").generator.upsample == "transpose"
