"""Full-reference metrics computed from pixels under one stated protocol: L1, MSE, PSNR, SSIM, MS-SSIM (torchmetrics)
and the checkerboard score."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import ConfigError, DataError
from .checkerboard import TILE, checkerboard_score

PIXEL_METRICS = ("l1", "mse", "psnr", "ssim", "ms_ssim", "checkerboard")
# ST-LPIPS is left out (with a note) where the stlpips-pytorch package that ships its weights is not installed.
DEFAULT_METRICS = ("psnr", "ssim", "ms_ssim", "l1", "mse", "st_lpips", "checkerboard")
# Metrics computed by a feature network: (ST-)LPIPS per image, FID/KID per set.
ALL_METRICS = (*PIXEL_METRICS, "st_lpips", "lpips", "fid", "kid")
HIGHER_IS_BETTER = {
    "l1": False,
    "mse": False,
    "psnr": True,
    "ssim": True,
    "ms_ssim": True,
    "fid": False,
    "kid": False,
    "lpips": False,
    "st_lpips": False,
    "checkerboard": False,
}
# Metrics of a baseline scored beside a model (super-resolution: bicubic_psnr, ...) carry this prefix.
BASELINE_PREFIX = "bicubic_"


def higher_is_better(name: str) -> bool:
    """Whether larger values of a metric (or of a baseline's, by its prefixed name) are better."""
    return HIGHER_IS_BETTER.get(name.removeprefix(BASELINE_PREFIX), True)


SSIM_KERNEL, SSIM_SIGMA = 11, 1.5
# MS-SSIM downsamples 4 times; torchmetrics needs side // 16 > kernel - 1 at the coarsest scale.
MS_SSIM_MIN_SIDE = SSIM_KERNEL * 2**4
CHECKERBOARD_PROTOCOL = (
    f"dB: 10 log10 of the mean, over the 15 non-zero frequencies at multiples of 1/4 cycle/pixel, of "
    f"r_output / r_target, r = (power + q) / (median power 2 bins around + q), on a {TILE}x{TILE} Hann-windowed "
    f"power spectrum averaged over half-overlapping tiles; q = quantisation noise power; n/a below {TILE} px"
)
# ITU-R BT.601 luma, full swing: Y in [0, 1] for RGB in [0, 1].
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# MATLAB rgb2ycbcr's Y (BT.601 studio swing, 16..235 of 255), the convention of super-resolution papers and
# BasicSR's test_y_channel: Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255. Its PSNR is 20 log10(255 / 219)
# = 1.32 dB above full-swing luma's for the same images, which is why papers' numbers need this one.
YCBCR_Y_WEIGHTS = (65.481 / 255, 128.553 / 255, 24.966 / 255)
YCBCR_Y_OFFSET = 16 / 255
CHANNEL_CHOICES = ("all", "luminance", "y")


@dataclass(frozen=True)
class MetricProtocol:
    """How images are compared: channels used, border crop, and the value range that counts as 1.0.

    Images are compared in [0, 1], where 1.0 is the full range of the data's sample type (255 for 8-bit,
    65535 for 16-bit), i.e. data_range = the sample type's range, as scikit-image does for integer images.
    """

    # "all": every channel, averaged; "luminance": full-swing BT.601 luma of RGB; "y": MATLAB's rgb2ycbcr Y of RGB
    channels: str = "all"
    crop_border: int = 0  # pixels removed from every side before comparing (super-resolution convention)
    sample_type: str = "uint8"

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form, with the implied data range spelled out."""
        out = asdict(self)
        out["data_range"] = {"uint8": 255, "uint16": 65535}.get(self.sample_type, 1.0)
        out["compared_in"] = "[0, 1] = [0, data_range]"
        out["ssim"] = (
            f"gaussian window {SSIM_KERNEL}x{SSIM_KERNEL}, sigma {SSIM_SIGMA}, K1 0.01, K2 0.03, border of (window-1)/2 excluded"
        )
        out["checkerboard"] = CHECKERBOARD_PROTOCOL
        return out


def validate_metric_names(names: list[str] | tuple[str, ...], available: tuple[str, ...] = PIXEL_METRICS) -> list[str]:
    """Lower-case and check metric names; raise ConfigError naming an unknown one."""
    out = []
    for name in names:
        key = name.strip().lower().replace("-", "_")
        if key not in available:
            raise ConfigError(f"unknown metric {name!r} (--metrics); choose from {', '.join(available)}")
        out.append(key)
    return out


def _prepare(img: torch.Tensor, protocol: MetricProtocol) -> torch.Tensor:
    """[-1, 1] CxHxW -> 1xC'xH'xW in [0, 1] (float64), per the protocol's channels and border crop."""
    x = (img.detach().double().clamp(-1, 1) + 1.0) / 2.0
    if protocol.channels in ("luminance", "y"):
        if x.shape[0] == 3:
            weights, offset = (
                (LUMA_WEIGHTS, 0.0) if protocol.channels == "luminance" else (YCBCR_Y_WEIGHTS, YCBCR_Y_OFFSET)
            )
            x = (x * torch.tensor(weights, dtype=x.dtype).view(3, 1, 1)).sum(0, keepdim=True) + offset
        elif x.shape[0] != 1:  # (one channel is already the grey plane: used as it is, as BasicSR does)
            raise ConfigError(f"--channels {protocol.channels} needs 1- or 3-channel images, got {x.shape[0]} channels")
    b = protocol.crop_border
    if b:
        if x.shape[1] <= 2 * b or x.shape[2] <= 2 * b:
            raise DataError(f"--crop-border {b} removes the whole {x.shape[2]}x{x.shape[1]} image")
        x = x[:, b:-b, b:-b]
    return x[None]


def compute_pixel_metrics(
    output: torch.Tensor, target: torch.Tensor, names: list[str], protocol: MetricProtocol
) -> dict[str, float]:
    """Metrics of one output against its target (both CxHxW in [-1, 1]); NaN where a metric cannot apply."""
    if output.shape != target.shape:
        raise DataError(
            f"output {tuple(output.shape)} and target {tuple(target.shape)} differ in size; they must match to be compared"
        )
    names = validate_metric_names(names)
    # Imported here: torchmetrics pulls in matplotlib and scipy.signal (~1 s, ~100 MiB), which a training run
    # without validation never needs.
    from torchmetrics.functional.image import (
        multiscale_structural_similarity_index_measure,
        peak_signal_noise_ratio,
    )

    x, y = _prepare(output, protocol), _prepare(target, protocol)
    values: dict[str, float] = {}
    for name in names:
        if name == "l1":
            values[name] = float((x - y).abs().mean())
        elif name == "mse":
            values[name] = float(((x - y) ** 2).mean())
        elif name == "psnr":
            values[name] = float(peak_signal_noise_ratio(x, y, data_range=1.0))
        elif name == "ssim":
            values[name] = _ssim(x.float(), y.float())  # float32: 3x faster, SSIM agrees to ~1e-6
        elif name == "ms_ssim":
            if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
                values[name] = float("nan")
            else:
                values[name] = float(
                    multiscale_structural_similarity_index_measure(
                        x.float(),
                        y.float(),
                        data_range=1.0,
                        kernel_size=SSIM_KERNEL,
                        sigma=SSIM_SIGMA,
                        normalize="relu",
                    )
                )
        elif name == "checkerboard":
            values[name] = checkerboard_score(x[0], y[0], protocol.sample_type)
    return values


def _ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean SSIM over the map's valid region (the (window-1)/2 border excluded, as Wang et al. and scikit-image)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    if min(x.shape[-2:]) < SSIM_KERNEL:
        return float("nan")
    _, full = structural_similarity_index_measure(
        x, y, data_range=1.0, kernel_size=SSIM_KERNEL, sigma=SSIM_SIGMA, return_full_image=True
    )
    pad = (SSIM_KERNEL - 1) // 2
    return float(full[..., pad:-pad, pad:-pad].mean())
