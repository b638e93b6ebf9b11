"""Image-quality metrics against scikit-image on real photos, and the summary statistics (mean, std, 95% CI)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from skimage.filters import gaussian
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from diptych.data.io import to_tensor
from diptych.data.samples import sample_photo
from diptych.errors import ConfigError, DataError
from diptych.metrics import (
    DEFAULT_METRICS,
    PIXEL_METRICS,
    MetricProtocol,
    compute_pixel_metrics,
    summarize,
    validate_metric_names,
)
from diptych.metrics.pixel import MS_SSIM_MIN_SIDE

BT601 = np.array([0.299, 0.587, 0.114])
SCORED = ["l1", "mse", "psnr", "ssim"]


def crop(name: str, top: int, left: int, h: int, w: int) -> np.ndarray:
    return np.ascontiguousarray(sample_photo(name)[top : top + h, left : left + w])


def degrade(img: np.ndarray, kind: str, seed: int = 0, sigma: float = 12.0) -> np.ndarray:
    """Noise, blur or both, rounded back to the image's own sample type."""
    top = np.iinfo(img.dtype).max
    x = img.astype(np.float64)
    if "blur" in kind:
        x = gaussian(x, sigma=1.2, channel_axis=2, preserve_range=True)
    if "noise" in kind:
        x = x + np.random.default_rng(seed).normal(0.0, sigma * top / 255, x.shape)
    return np.clip(np.round(x), 0, top).astype(img.dtype)


def sk_ssim(out: np.ndarray, target: np.ndarray, data_range: float) -> float:
    """scikit-image SSIM in the protocol's configuration (Gaussian 11x11, sigma 1.5, population covariance)."""
    kwargs = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": data_range}
    if out.ndim == 3 and out.shape[2] == 1:
        out, target = out[:, :, 0], target[:, :, 0]
    if out.ndim == 3:
        kwargs["channel_axis"] = 2
    return float(structural_similarity(target, out, **kwargs))


def reference(out: np.ndarray, target: np.ndarray, data_range: float) -> dict[str, float]:
    """Independent values: numpy for L1/MSE (in [0, 1] units), scikit-image for PSNR and SSIM."""
    diff = out.astype(np.float64) / data_range - target.astype(np.float64) / data_range
    return {
        "l1": float(np.abs(diff).mean()),
        "mse": float((diff**2).mean()),
        "psnr": float(peak_signal_noise_ratio(target, out, data_range=data_range)),
        "ssim": sk_ssim(out, target, data_range),
    }


def assert_matches(ours: dict[str, float], ref: dict[str, float]) -> None:
    assert set(ours) == set(ref)
    assert ours["psnr"] == pytest.approx(ref["psnr"], abs=1e-4)
    assert ours["ssim"] == pytest.approx(ref["ssim"], abs=1e-4)
    assert ours["l1"] == pytest.approx(ref["l1"], rel=1e-6, abs=1e-9)
    assert ours["mse"] == pytest.approx(ref["mse"], rel=1e-6, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Agreement with scikit-image / numpy


@pytest.mark.parametrize("kind", ["noise", "blur", "noise+blur"])
@pytest.mark.parametrize(("photo", "box"), [("astronaut", (30, 150, 72, 96)), ("coffee", (120, 200, 64, 80))])
def test_rgb_uint8_matches_skimage(photo: str, box: tuple[int, int, int, int], kind: str) -> None:
    target = crop(photo, *box)
    out = degrade(target, kind)
    ours = compute_pixel_metrics(to_tensor(out), to_tensor(target), SCORED, MetricProtocol())
    ref = reference(out, target, 255)
    assert_matches(ours, ref)
    assert 10 < ours["psnr"] < 45 and 0.2 < ours["ssim"] < 0.99  # a real, partial degradation


def test_more_noise_scores_worse() -> None:
    target = crop("chelsea", 40, 100, 64, 64)
    scores = [
        compute_pixel_metrics(to_tensor(degrade(target, "noise", sigma=s)), to_tensor(target), SCORED, MetricProtocol())
        for s in (4, 12, 30)
    ]
    for better, worse in itertools.pairwise(scores):
        assert better["psnr"] > worse["psnr"] and better["ssim"] > worse["ssim"]
        assert better["l1"] < worse["l1"] and better["mse"] < worse["mse"]


def test_uint16_rgb_uses_the_full_16_bit_range() -> None:
    target = (crop("rocket", 100, 150, 56, 72).astype(np.uint16) * 257) ^ np.uint16(0x00A5)  # use the low byte too
    out = degrade(target, "noise+blur", seed=3)
    ours = compute_pixel_metrics(to_tensor(out), to_tensor(target), SCORED, MetricProtocol(sample_type="uint16"))
    assert_matches(ours, reference(out, target, 65535))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_single_channel(dtype: type) -> None:
    gray = crop("coffee", 50, 60, 60, 70).mean(axis=2, keepdims=True)
    target = np.round(gray * (257 if dtype == np.uint16 else 1)).astype(dtype)
    out = degrade(target, "noise+blur", seed=5)
    sample_type = np.dtype(dtype).name
    ours = compute_pixel_metrics(to_tensor(out), to_tensor(target), SCORED, MetricProtocol(sample_type=sample_type))
    assert_matches(ours, reference(out, target, float(np.iinfo(dtype).max)))


def test_luminance_equals_skimage_on_the_bt601_y_plane() -> None:
    target = crop("astronaut", 200, 220, 64, 72)
    out = degrade(target, "noise", seed=1)
    ours = compute_pixel_metrics(to_tensor(out), to_tensor(target), SCORED, MetricProtocol(channels="luminance"))
    y_out, y_target = out.astype(np.float64) / 255 @ BT601, target.astype(np.float64) / 255 @ BT601
    assert_matches(ours, reference(y_out, y_target, 1.0))
    rgb = compute_pixel_metrics(to_tensor(out), to_tensor(target), SCORED, MetricProtocol())
    assert abs(ours["psnr"] - rgb["psnr"]) > 0.1  # really a different measurement


def test_luminance_of_one_channel_is_that_channel_and_rejects_four() -> None:
    target = crop("coffee", 10, 10, 48, 48)[:, :, 1:2]
    out = degrade(target, "noise", seed=2)
    lum = compute_pixel_metrics(to_tensor(out), to_tensor(target), SCORED, MetricProtocol(channels="luminance"))
    assert lum == compute_pixel_metrics(to_tensor(out), to_tensor(target), SCORED, MetricProtocol())
    rgba = np.concatenate([crop("coffee", 10, 10, 48, 48), target], axis=2)
    with pytest.raises(ConfigError, match="4 channels"):
        compute_pixel_metrics(to_tensor(rgba), to_tensor(rgba), ["psnr"], MetricProtocol(channels="luminance"))


@pytest.mark.parametrize("border", [1, 4, 8])
def test_crop_border_equals_skimage_on_cropped_arrays(border: int) -> None:
    target = crop("chelsea", 60, 80, 64, 80)
    out = degrade(target, "noise+blur", seed=4)
    # Make the border much worse than the centre, so that cropping it visibly matters.
    out[:border], out[:, -border:] = 255 - out[:border], 255 - out[:, -border:]
    ours = compute_pixel_metrics(to_tensor(out), to_tensor(target), SCORED, MetricProtocol(crop_border=border))
    b = border
    assert_matches(ours, reference(out[b:-b, b:-b], target[b:-b, b:-b], 255))
    uncropped = compute_pixel_metrics(to_tensor(out), to_tensor(target), ["psnr"], MetricProtocol())
    assert ours["psnr"] > uncropped["psnr"] + 0.5


def test_crop_border_removing_everything_is_a_data_error() -> None:
    img = to_tensor(crop("coffee", 0, 0, 20, 30))
    with pytest.raises(DataError, match="--crop-border 10 removes the whole 30x20 image"):
        compute_pixel_metrics(img, img, ["psnr"], MetricProtocol(crop_border=10))


def test_identical_images() -> None:
    img = to_tensor(crop("rocket", 0, 0, 40, 40))
    values = compute_pixel_metrics(img, img, SCORED, MetricProtocol())
    assert values["l1"] == 0 and values["mse"] == 0
    assert values["psnr"] == math.inf
    assert values["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_ssim_is_nan_below_the_window_size() -> None:
    small = crop("coffee", 0, 0, 10, 30)
    values = compute_pixel_metrics(to_tensor(degrade(small, "noise")), to_tensor(small), SCORED, MetricProtocol())
    assert math.isnan(values["ssim"])
    assert math.isfinite(values["psnr"])


# ---------------------------------------------------------------------------------------------------------------
# MS-SSIM


def test_ms_ssim_of_an_image_with_itself_is_one_and_falls_with_noise() -> None:
    target = crop("astronaut", 20, 100, 200, 210)
    assert compute_pixel_metrics(to_tensor(target), to_tensor(target), ["ms_ssim"], MetricProtocol())[
        "ms_ssim"
    ] == pytest.approx(1.0, abs=1e-6)
    values = [
        compute_pixel_metrics(
            to_tensor(degrade(target, "noise", sigma=s)), to_tensor(target), ["ms_ssim"], MetricProtocol()
        )["ms_ssim"]
        for s in (3, 10, 25, 60)
    ]
    assert all(0 < v < 1 for v in values)
    assert values == sorted(values, reverse=True) and values[0] - values[-1] > 0.1


@pytest.mark.parametrize(("h", "w"), [(160, 300), (300, 160), (40, 40)])
def test_ms_ssim_is_nan_for_small_images(h: int, w: int) -> None:
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3)).astype(np.uint8)
    values = compute_pixel_metrics(
        to_tensor(degrade(img, "noise")), to_tensor(img), ["ms_ssim", "psnr"], MetricProtocol()
    )
    assert math.isnan(values["ms_ssim"]) and math.isfinite(values["psnr"])


@pytest.mark.parametrize("side", sorted({MS_SSIM_MIN_SIDE - 1, MS_SSIM_MIN_SIDE, 161, 170, 175, 176, 200}))
def test_ms_ssim_at_and_above_the_documented_minimum(side: int) -> None:
    """Images of MS_SSIM_MIN_SIDE pixels or more get a value; smaller ones get NaN; nothing raises."""
    img = np.random.default_rng(side).integers(0, 256, (side, side + 7, 3)).astype(np.uint8)
    value = compute_pixel_metrics(to_tensor(degrade(img, "noise")), to_tensor(img), ["ms_ssim"], MetricProtocol())[
        "ms_ssim"
    ]
    if side >= MS_SSIM_MIN_SIDE:
        assert 0 < value < 1
    else:
        assert math.isnan(value)


# ---------------------------------------------------------------------------------------------------------------
# Errors and names


def test_output_and_target_of_different_sizes() -> None:
    a, b = to_tensor(crop("coffee", 0, 0, 32, 32)), to_tensor(crop("coffee", 0, 0, 32, 40))
    with pytest.raises(DataError) as info:
        compute_pixel_metrics(a, b, ["psnr"], MetricProtocol())
    assert "(3, 32, 32)" in str(info.value) and "(3, 32, 40)" in str(info.value)
    gray = to_tensor(crop("coffee", 0, 0, 32, 32)[:, :, :1])
    with pytest.raises(DataError, match=r"\(3, 32, 32\).*\(1, 32, 32\)"):
        compute_pixel_metrics(a, gray, ["psnr"], MetricProtocol())


@pytest.mark.parametrize("bad", ["fid", "psnrr", "ssim3d"])
def test_unknown_metric_name(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_metric_names(["psnr", bad])
    message = str(info.value)
    assert repr(bad) in message
    for name in PIXEL_METRICS:
        assert name in message  # the choices are listed


def test_metric_names_are_normalised() -> None:
    assert validate_metric_names([" PSNR", "MS-SSIM", "l1"]) == ["psnr", "ms_ssim", "l1"]
    assert set(DEFAULT_METRICS) == {*PIXEL_METRICS, "st_lpips"}  # every pixel metric, and ST-LPIPS


@pytest.mark.parametrize(("sample_type", "data_range"), [("uint8", 255), ("uint16", 65535), ("float32", 1.0)])
def test_protocol_states_its_data_range(sample_type: str, data_range: float) -> None:
    d = MetricProtocol(channels="luminance", crop_border=4, sample_type=sample_type).to_dict()
    assert d["data_range"] == data_range
    assert (d["channels"], d["crop_border"], d["sample_type"]) == ("luminance", 4, sample_type)
    assert "11x11" in d["ssim"] and "sigma 1.5" in d["ssim"]


# ---------------------------------------------------------------------------------------------------------------
# summarize()


def test_summary_equals_scipy_t_interval() -> None:
    values = np.random.default_rng(7).normal(25.0, 3.0, 23)
    s = summarize(values.tolist())
    assert s.n == 23
    assert s.mean == pytest.approx(values.mean(), rel=1e-12)
    assert s.std == pytest.approx(values.std(ddof=1), rel=1e-12)
    low, high = stats.t.interval(0.95, df=22, loc=values.mean(), scale=stats.sem(values))
    assert (s.ci95_low, s.ci95_high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert s.to_dict() == {"mean": s.mean, "std": s.std, "n": 23, "ci95_low": s.ci95_low, "ci95_high": s.ci95_high}


def test_summary_by_hand() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(5 / 3)  # sum of squared deviations 5, n - 1 = 3
    half = 3.182446305284263 * std / 2  # t(0.975, 3 dof) * std / sqrt(4)
    assert (s.mean, s.n) == (2.5, 4)
    assert s.std == pytest.approx(std, rel=1e-12)
    assert s.ci95_low == pytest.approx(2.5 - half, rel=1e-9) and s.ci95_high == pytest.approx(2.5 + half, rel=1e-9)


def test_summary_drops_nan_and_inf() -> None:
    finite = [30.0, 31.5, 29.0, 33.25]
    s = summarize([math.inf, *finite[:2], math.nan, *finite[2:], -math.inf])
    assert s == summarize(finite)
    assert s.n == 4 and s.mean == pytest.approx(np.mean(finite))


def test_summary_of_one_value() -> None:
    s = summarize([0.75, math.nan])
    assert (s.mean, s.std, s.n) == (0.75, 0.0, 1)
    assert math.isnan(s.ci95_low) and math.isnan(s.ci95_high)


@pytest.mark.parametrize("values", [[], [math.nan, math.inf]])
def test_summary_of_no_values(values: list[float]) -> None:
    s = summarize(values)
    assert s.n == 0
    assert all(math.isnan(v) for v in (s.mean, s.std, s.ci95_low, s.ci95_high))


def test_y_channel_is_matlab_rgb2ycbcr_and_gives_the_papers_psnr() -> None:
    """--channels y scores MATLAB's studio-swing Y (skimage's rgb2ycbcr), as SR papers and BasicSR do: its PSNR is
    20 log10(255/219) = 1.322 dB above full-swing luma's, whatever the images."""
    from skimage.color import rgb2ycbcr

    target = crop("astronaut", 200, 220, 64, 72)
    out = degrade(target, "noise+blur", seed=3)
    ours = compute_pixel_metrics(to_tensor(out), to_tensor(target), SCORED, MetricProtocol(channels="y"))
    y_out, y_target = rgb2ycbcr(out)[:, :, 0] / 255, rgb2ycbcr(target)[:, :, 0] / 255
    assert_matches(ours, reference(y_out, y_target, 1.0))
    luma = compute_pixel_metrics(to_tensor(out), to_tensor(target), ["psnr"], MetricProtocol(channels="luminance"))
    assert ours["psnr"] - luma["psnr"] == pytest.approx(20 * np.log10(255 / 219), abs=1e-6)
    grey = target[:, :, :1]
    one = compute_pixel_metrics(to_tensor(out[:, :, :1]), to_tensor(grey), SCORED, MetricProtocol(channels="y"))
    assert one == compute_pixel_metrics(to_tensor(out[:, :, :1]), to_tensor(grey), SCORED, MetricProtocol())
