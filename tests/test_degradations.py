"""Real-ESRGAN degradation: kernels, each stage's measurable effect, determinism under a seed, the settings' checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diptych.data.degradations import (
    REAL_ESRGAN_KERNEL_SIZES,
    BlurSettings,
    DegradationConfig,
    StageSettings,
    add_gaussian_noise,
    add_poisson_noise,
    anisotropic_kernel,
    degrade,
    filter2d,
    jpeg_artifacts,
    random_blur_kernel,
    random_resize,
    sinc_kernel,
)
from diptych.data.samples import sample_photo
from diptych.errors import ConfigError


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A 96 x 96 crop of a real photo as 3 x H x W floats in [0, 1]."""
    arr = sample_photo("astronaut")[40:136, 180:276].astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def second_moments(kernel: np.ndarray) -> tuple[float, float, float]:
    half = kernel.shape[0] // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    return float((kernel * x * x).sum()), float((kernel * y * y).sum()), float((kernel * x * y).sum())


def high_frequency_energy(image: torch.Tensor) -> float:
    """Mean squared Laplacian: what blur removes."""
    lap = 4 * image[:, 1:-1, 1:-1] - image[:, :-2, 1:-1] - image[:, 2:, 1:-1] - image[:, 1:-1, :-2] - image[:, 1:-1, 2:]
    return float(lap.pow(2).mean())


def test_gaussian_kernels_sum_to_one_are_symmetric_and_have_their_sigmas() -> None:
    iso = anisotropic_kernel(31, 2.0, 2.0, 0.0)
    assert iso.shape == (31, 31) and math.isclose(iso.sum(), 1.0, rel_tol=1e-12)
    assert np.allclose(iso, iso.T) and np.allclose(iso, iso[::-1]) and np.allclose(iso, iso[:, ::-1])
    var_x, var_y, cov = second_moments(iso)
    assert var_x == pytest.approx(4.0, rel=1e-3) and var_y == pytest.approx(4.0, rel=1e-3) and abs(cov) < 1e-9
    wide_x = anisotropic_kernel(41, 3.0, 1.0, 0.0)
    var_x, var_y, _ = second_moments(wide_x)
    assert var_x == pytest.approx(9.0, rel=1e-2) and var_y == pytest.approx(1.0, rel=1e-2)
    turned = anisotropic_kernel(41, 3.0, 1.0, math.pi / 2)  # a quarter turn swaps the axes
    assert np.allclose(turned, wide_x.T, atol=1e-15)
    diagonal = anisotropic_kernel(41, 3.0, 1.0, math.pi / 4)
    assert np.allclose(diagonal, diagonal[::-1, ::-1]) and second_moments(diagonal)[2] > 3.9  # (9 - 1) / 2 = 4


def test_generalized_and_plateau_shapes() -> None:
    gaussian = anisotropic_kernel(21, 2.0, 1.5, 0.3)
    assert np.allclose(anisotropic_kernel(21, 2.0, 1.5, 0.3, 1.0, "generalized"), gaussian)
    flat_top = anisotropic_kernel(21, 2.0, 2.0, 0.0, 4.0, "generalized")
    peaked = anisotropic_kernel(21, 2.0, 2.0, 0.0, 0.5, "generalized")
    plateau = anisotropic_kernel(21, 2.0, 2.0, 0.0, 2.0, "plateau")
    for k in (flat_top, peaked, plateau):
        assert math.isclose(k.sum(), 1.0, rel_tol=1e-12) and np.allclose(k, k.T) and k.argmax() == k.size // 2
    # beta > 1 flattens the top (the neighbours of the centre are almost as high), beta < 1 sharpens it.
    assert (
        flat_top[10, 11] / flat_top[10, 10]
        > 0.99
        > gaussian[10, 11] / gaussian[10, 10]
        > peaked[10, 11] / peaked[10, 10]
    )
    assert plateau[10, 0] / plateau[10, 10] > gaussian[10, 0] / gaussian[10, 10]  # heavy tails


def test_sinc_kernel_passes_below_its_cutoff_and_stops_above() -> None:
    cutoff = math.pi / 2
    kernel = sinc_kernel(21, cutoff)
    assert math.isclose(kernel.sum(), 1.0, rel_tol=1e-12)
    assert np.allclose(kernel, kernel.T) and np.allclose(kernel, kernel[::-1])
    response = np.abs(np.fft.fft2(kernel, s=(128, 128)))
    f = np.fft.fftfreq(128) * 2 * math.pi
    radius = np.hypot(*np.meshgrid(f, f))
    passband = response[radius < 0.7 * cutoff]
    stopband = response[(radius > 1.3 * cutoff) & (radius <= math.pi)]
    assert passband.min() > 0.8 and passband.max() < 1.1  # (ripple of the 21-tap truncation)
    assert stopband.max() < 0.1


def test_random_kernels_follow_the_settings() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        k = random_blur_kernel(BlurSettings(), rng)
        assert k.shape[0] in REAL_ESRGAN_KERNEL_SIZES and k.shape[0] == k.shape[1]
        assert math.isclose(k.sum(), 1.0, rel_tol=1e-9) and np.allclose(k, k[::-1, ::-1])
    only_sinc = BlurSettings(kernel_sizes=(9,), sinc_prob=1.0)
    k = random_blur_kernel(only_sinc, np.random.default_rng(1))
    assert k.shape == (9, 9) and (k < 0).any()  # a sinc rings; Gaussian-family kernels never go negative


def test_blur_lowers_high_frequency_energy_and_keeps_the_mean(photo: torch.Tensor) -> None:
    blurred = filter2d(photo, anisotropic_kernel(21, 2.0, 2.0, 0.0))
    assert blurred.shape == photo.shape and blurred.dtype == photo.dtype
    assert high_frequency_energy(blurred) < 0.1 * high_frequency_energy(photo)
    assert float(blurred.mean()) == pytest.approx(float(photo.mean()), abs=2e-3)
    tiny = filter2d(torch.rand(1, 3, 4), anisotropic_kernel(21, 2.0, 2.0, 0.0))  # smaller than the kernel
    assert tiny.shape == (1, 3, 4) and bool(torch.isfinite(tiny).all())


def test_gaussian_noise_adds_the_expected_variance() -> None:
    flat = torch.full((3, 128, 128), 0.5)
    noisy = add_gaussian_noise(flat, 0.05, False, np.random.default_rng(0))
    assert float((noisy - flat).var()) == pytest.approx(0.05**2, rel=0.05)
    assert not torch.equal(noisy[0], noisy[1])
    grey = add_gaussian_noise(flat, 0.05, True, np.random.default_rng(0))
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # one field for every channel


def test_poisson_noise_has_the_shot_noise_variance() -> None:
    """A flat image has one 8-bit level, so BasicSR's model takes 2 photons per unit: counts ~ Poisson(0.5 * 2),
    noise = scale * (counts / 2 - 0.5), of variance scale^2 * 0.5 / 2."""
    flat = torch.full((1, 128, 128), 0.5)
    noisy = add_poisson_noise(flat, 0.1, False, np.random.default_rng(0))
    assert float((noisy - flat).var()) == pytest.approx(0.1**2 * 0.25, rel=0.05)
    assert float((noisy - flat).mean()) == pytest.approx(0.0, abs=2e-3)
    colour = add_poisson_noise(torch.full((3, 32, 32), 0.5), 0.1, True, np.random.default_rng(0))
    assert torch.equal(colour[0], colour[2])


def test_jpeg_at_quality_10_changes_the_image_more_than_at_95(photo: torch.Tensor) -> None:
    low, high = jpeg_artifacts(photo, 10), jpeg_artifacts(photo, 95)
    assert low.shape == photo.shape
    low_error, high_error = float((low - photo).abs().mean()), float((high - photo).abs().mean())
    assert low_error > 0.02 and high_error < 0.01 and low_error > 3 * high_error


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_jpeg_of_other_channel_counts_compresses_each_channel(photo: torch.Tensor, channels: int) -> None:
    image = torch.cat([photo, photo[:1]])[:channels]
    out = jpeg_artifacts(image, 10)
    assert out.shape == image.shape
    assert torch.allclose(out[0], jpeg_artifacts(image[:1], 10)[0])  # channel 0 as a grey JPEG of its own


def test_jpeg_keeps_precision_finer_than_8_bits() -> None:
    """A flat image survives JPEG exactly, so its artefacts are zero and a 16-bit or float value comes back as it
    was, not rounded to 8 bits."""
    flat = torch.full((3, 16, 16), 0.5 + 1e-4)
    assert torch.equal(jpeg_artifacts(flat, 10), flat)


def test_random_resize_gives_the_drawn_size() -> None:
    image = torch.rand(3, 40, 30)
    keep = StageSettings(resize_probs=(0.0, 0.0, 1.0))
    assert random_resize(image, (20.0, 15.0), keep, ("bicubic",), np.random.default_rng(0)).shape == (3, 20, 15)
    down = StageSettings(resize_probs=(0.0, 1.0, 0.0), resize_range=(0.5, 1.0))
    for seed in range(5):
        h, w = random_resize(image, (40.0, 30.0), down, ("area",), np.random.default_rng(seed)).shape[1:]
        assert 20 <= h <= 40 and 15 <= w <= 30 and abs(h / 40 - w / 30) < 0.05


@pytest.mark.parametrize(("shape", "scale"), [((3, 67, 53), 4), ((1, 48, 48), 2), ((3, 35, 41), 3)])
def test_degrade_gives_the_lr_size_in_range_for_any_channels(shape: tuple[int, ...], scale: int) -> None:
    hr = torch.rand(shape)
    for seed in range(3):
        lr = degrade(hr, scale, np.random.default_rng(seed))
        assert lr.shape == (shape[0], shape[1] // scale, shape[2] // scale)
        assert bool(torch.isfinite(lr).all()) and float(lr.min()) >= 0.0 and float(lr.max()) <= 1.0
        assert torch.equal(lr, (lr * 255).round() / 255)  # rounded to 8-bit levels, as Real-ESRGAN
    unrounded = degrade(hr.double(), scale, np.random.default_rng(0), levels=None)
    assert unrounded.dtype == torch.float64 and not torch.equal(unrounded, (unrounded * 255).round() / 255)
    assert degrade(hr.bfloat16(), scale, np.random.default_rng(0)).dtype == torch.bfloat16


def test_degrade_is_deterministic_under_a_seed(photo: torch.Tensor) -> None:
    first = degrade(photo, 4, np.random.default_rng(123))
    assert torch.equal(first, degrade(photo, 4, np.random.default_rng(123)))
    assert not torch.equal(first, degrade(photo, 4, np.random.default_rng(124)))


def test_degrade_degrades_more_than_bicubic(photo: torch.Tensor) -> None:
    """The degraded LR differs from the clean bicubic LR by blur, noise and JPEG (averaged over seeds)."""
    from diptych.data.resize import bicubic_downscale

    clean = bicubic_downscale(photo, 4).clamp(0, 1)
    errors = [float((degrade(photo, 4, np.random.default_rng(s)) - clean).abs().mean()) for s in range(4)]
    assert min(errors) > 0.005


def test_defaults_are_real_esrgan_x4() -> None:
    config = DegradationConfig()
    config.check()
    assert config.first.blur.sigma_range == (0.2, 3.0) and config.second.blur.sigma_range == (0.2, 1.5)
    assert config.first.resize_probs == (0.2, 0.7, 0.1) and config.second.resize_probs == (0.3, 0.4, 0.3)
    assert config.first.noise_range == (1.0, 30.0) and config.second.noise_range == (1.0, 25.0)
    assert config.second.blur_prob == 0.8 and config.final_sinc_prob == 0.8
    assert config.first.jpeg_range == config.second.jpeg_range == (30, 95)


def test_settings_round_trip_through_json_and_partial_overrides() -> None:
    config = DegradationConfig()
    assert DegradationConfig.from_json(config.to_json()) == config
    changed = DegradationConfig.from_json({"second": {"noise_range": [0, 5]}, "final_sinc_prob": 0.5})
    assert changed.second.noise_range == (0, 5) and changed.final_sinc_prob == 0.5
    assert changed.first == config.first and changed.second.jpeg_range == (30, 95)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"final_sinc_prob": 1.5}, r"degradation.final_sinc_prob 1.5: must be a probability in \[0, 1\]"),
        ({"first": {"noise_range": [30, 1]}}, r"degradation.first.noise_range \[30, 1\]: must be \[low, high\]"),
        ({"second": {"blur": {"kernel_sizes": [8]}}}, r"degradation.second.blur.kernel_sizes \[8\]: must be odd"),
        ({"first": {"jpeg_range": [0, 95]}}, r"degradation.first.jpeg_range"),
        ({"first": {"resize_range": [1.2, 1.5]}}, r"degradation.first.resize_range \[1.2, 1.5\]: must contain 1"),
        ({"first": {"noise": 3}}, r"degradation.first.noise: unknown setting"),
        ({"resize_modes": ["nearest"]}, r"degradation.resize_modes \['nearest'\]: choose"),
    ],
)
def test_bad_settings_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DegradationConfig.from_json(data)
