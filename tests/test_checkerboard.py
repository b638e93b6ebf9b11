"""The checkerboard score: synthetic patterns of known strength, real photos, and real generator outputs."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diptych.data.io import to_tensor
from diptych.data.samples import sample_photo
from diptych.metrics import MetricProtocol, compute_pixel_metrics
from diptych.metrics.checkerboard import TILE, checkerboard_score, peak_ratio, power_spectrum, quantisation_power

from .conftest import photo_crops, tiny_config, write_aligned

STRENGTHS = (0.0, 0.5 / 255, 1 / 255, 2 / 255, 8 / 255, 32 / 255)


def period_pattern(h: int, w: int, period: int) -> torch.Tensor:
    """A +-1 pattern repeating every `period` pixels along both axes (2: a checkerboard), 1xHxW float64."""
    y, x = np.mgrid[:h, :w]
    pattern = np.where((y % period < period // 2) ^ (x % period < period // 2), 1.0, -1.0)
    return torch.from_numpy(pattern)[None]


def photo01(name: str, size: int | None = None) -> torch.Tensor:
    """A bundled photo (or its top-left size x size crop) as 3xHxW float64 in [0, 1]."""
    arr = sample_photo(name)
    if size:
        arr = arr[:size, :size]
    return torch.from_numpy(arr.astype(np.float64) / 255).permute(2, 0, 1)


def quantised(x: torch.Tensor) -> torch.Tensor:
    """Rounded to 8 bits, as outputs are scored."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def test_power_spectrum_units_and_axes() -> None:
    noise = torch.randn(1, 256, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1
    assert float(power_spectrum(noise).mean()) == pytest.approx(0.01, rel=0.02)  # white noise: its variance per bin
    stripes = period_pattern(64, 64, 2)[:, :1].expand(1, 64, 64)  # varies along x only
    spectrum = power_spectrum(stripes)
    assert divmod(int(spectrum.argmax()), TILE) == (0, TILE // 2)  # all the energy at (0, 1/2 cycle per pixel)


@pytest.mark.parametrize("period", [2, 4])
def test_monotone_in_strength_and_zero_without_pattern(period: int) -> None:
    """A smooth image plus a +-a pattern of period 2 (stride-2 transposed convolution) or 4 (two of them)."""
    h, w = 96, 80
    y, x = np.mgrid[:h, :w]
    smooth = torch.from_numpy(0.5 + 0.2 * np.sin(x / 9.0) * np.cos(y / 13.0))[None].expand(3, h, w)
    pattern = period_pattern(h, w, period)
    scores = [checkerboard_score(quantised(smooth + a * pattern), quantised(smooth)) for a in STRENGTHS]
    assert scores[0] == 0.0
    assert all(s1 < s2 for s1, s2 in itertools.pairwise(scores)), scores
    assert scores[2] > 3 and scores[-1] > 30  # +-1/255 already shows; +-32/255 is blatant
    alone = [checkerboard_score(quantised(smooth + a * pattern), None) for a in STRENGTHS]
    assert abs(alone[0]) < 1  # without a target: no more energy at those frequencies than around them
    assert all(s1 < s2 for s1, s2 in itertools.pairwise(alone)), alone


def test_flat_images_score_zero() -> None:
    """Quantisation noise keeps 0/0 away: a flat output against a flat target is 0 dB, not NaN."""
    flat = torch.full((1, 64, 64), 0.25, dtype=torch.float64)
    assert checkerboard_score(flat, flat) == 0.0
    assert peak_ratio(flat, quantisation_power("uint8")) == 0.0
    assert checkerboard_score(flat + 2 / 255 * period_pattern(64, 64, 2), flat) > 20


def test_invariant_to_brightness_offset() -> None:
    photo = photo01("astronaut", 128) * 0.6 + 0.2
    pattern = 3 / 255 * period_pattern(128, 128, 2)
    for offset in (-0.15, 0.1):
        assert checkerboard_score(photo + pattern + offset, photo) == pytest.approx(
            checkerboard_score(photo + pattern, photo), abs=1e-9
        )
        assert checkerboard_score(photo + offset, None) == pytest.approx(checkerboard_score(photo, None), abs=1e-9)


def test_the_target_itself_scores_zero_and_small_images_are_nan() -> None:
    photo = quantised(photo01("coffee", 200))
    assert checkerboard_score(photo, photo) == 0.0
    small = photo[:, : TILE - 1, :100]
    assert math.isnan(checkerboard_score(small, small))


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket"])
def test_real_photos_low_and_high_with_a_faint_checkerboard(name: str) -> None:
    """Photos have no more energy at period 2 and 4 than around it; +-2/255 of checkerboard (barely visible) shows."""
    photo = quantised(photo01(name))
    with_pattern = quantised(photo + 2 / 255 * period_pattern(*photo.shape[1:], 2))
    assert abs(checkerboard_score(photo, None)) < 2.5
    assert checkerboard_score(with_pattern, None) > checkerboard_score(photo, None) + 3
    assert checkerboard_score(with_pattern, photo) > 3


def test_periodic_content_of_the_target_does_not_hide_a_checkerboard() -> None:
    """A target with strong period-4 stripes of its own: an output that reproduces them scores about 0, and one
    that adds a faint checkerboard scores as it would on a plain photo (peak ratios are compared peak by peak)."""
    photo = 0.8 * photo01("astronaut", 256) + 0.1
    stripes = period_pattern(256, 256, 4)[:, :1].expand(1, 256, 256)  # varies along x only
    textured = quantised(photo + 0.05 * stripes)
    checkerboard = 2 / 255 * period_pattern(256, 256, 2)
    plain = checkerboard_score(quantised(photo + checkerboard), quantised(photo))
    assert checkerboard_score(textured, None) > 10  # the stripes alone are a strong peak
    assert checkerboard_score(quantised(textured + 0.5 / 255), textured) == pytest.approx(0.0, abs=0.3)
    assert checkerboard_score(quantised(textured + checkerboard), textured) == pytest.approx(plain, abs=1.5)


@pytest.mark.parametrize("size", [40, 77, 130, 257])
def test_robust_to_image_size(size: int) -> None:
    """The spectrum has the same bins at any size: crops of 40 to 257 px agree on clean and patterned photos."""
    photo = quantised(photo01("astronaut")[:, 100 : 100 + size, 150 : 150 + size])
    with_pattern = quantised(photo + 4 / 255 * period_pattern(size, size, 2))
    assert checkerboard_score(photo, photo) == 0.0
    assert 8 < checkerboard_score(with_pattern, photo) < 25


def test_reported_through_the_metric_protocol() -> None:
    """compute_pixel_metrics scores it in [0, 1] units of the sample type, under the protocol's border crop."""
    target = sample_photo("chelsea")[:96, :96]
    noisy = np.clip(target + np.where(period_pattern(96, 96, 2)[0, :, :, None] > 0, 3, -3), 0, 255).astype(np.uint8)
    values = compute_pixel_metrics(to_tensor(noisy), to_tensor(target), ["checkerboard"], MetricProtocol())
    expected = checkerboard_score(torch.from_numpy(noisy / 255).permute(2, 0, 1), photo01("chelsea", 96))
    assert values["checkerboard"] == pytest.approx(expected, abs=1e-4)  # (float32 tensors in between)
    cropped = compute_pixel_metrics(
        to_tensor(noisy), to_tensor(target), ["checkerboard"], MetricProtocol(crop_border=40)
    )
    assert math.isnan(cropped["checkerboard"])  # 16 px left: below the 32 px tiles
    assert "multiples of 1/4 cycle/pixel" in MetricProtocol().to_dict()["checkerboard"]


def test_separates_transposed_from_resize_convolution_outputs(tmp_path: Path) -> None:
    """After the same few steps on a real task, a transposed-convolution U-Net's outputs score far above those of
    the resize-then-convolve one (measured: 22 dB against 1.4 after 20 steps at 64 px)."""
    from diptych.evaluate import evaluate
    from diptych.train import train

    crops = photo_crops("coffee", 64, 10, seed=3)
    grey = [np.repeat(c.mean(2, keepdims=True).astype(np.uint8), 3, 2) for c in crops]
    write_aligned(tmp_path / "ds" / "train", list(zip(grey[:8], crops[:8], strict=True)))
    write_aligned(tmp_path / "ds" / "test", list(zip(grey[8:], crops[8:], strict=True)))
    scores = {}
    for upsample in ("transpose", "resize"):
        config = tiny_config(tmp_path / "ds", max_steps=10)
        config.generator.upsample = upsample
        run = train(config, tmp_path / upsample, progress=False).run_dir
        summary = evaluate(run, tmp_path / "ds", tmp_path / f"ev_{upsample}", metrics=["checkerboard"], progress=False)
        scores[upsample] = summary.summary["metrics"]["checkerboard"]
    assert scores["transpose"]["n"] == 2 and scores["transpose"]["mean"] > 10
    assert scores["resize"]["mean"] < 5
