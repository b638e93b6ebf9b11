"""Checkerboard score: the periodic energy an image holds at the frequencies stride-2 and stride-4 upsampling leave
(transposed convolutions' checkerboard), relative to its own spectrum around them, and to its target's.

The power spectrum is averaged over overlapping TILE x TILE tiles (Welch's method: each tile's mean removed,
a 2-D Hann window, |FFT|^2 normalised so white noise of variance s^2 gives s^2 in every bin), so its bins are
the same for every image size. The peaks are the 15 non-zero frequencies whose components are multiples of
1/4 cycle per pixel (periods 2 and 4 along either axis and diagonally). Each peak's power is compared with the
median power on the ring of bins two bins away (beyond the Hann window's leakage), both raised by the
quantisation noise q of the sample type so that flat images do not divide zero by zero:

    r_x(p) = (S_x(p) + q) / (median over ring(p) of S_x + q)
    checkerboard(output, target) = 10 log10( mean over peaks p of r_output(p) / r_target(p) )   [dB]

and without a target 10 log10(mean of r_output(p)). Dividing peak by peak cancels periodic content the target
itself has (fabric, fences, JPEG blocks) at its own frequency. 0 dB means no more periodic energy than the target
has; a period-2 pattern of +-1/255 on a photograph gives a few dB, a visible one 10-30 dB.
"""

from __future__ import annotations

import math

import torch

TILE = 32
PEAK_STEP = TILE // 4  # bins per 1/4 cycle per pixel
PEAKS = tuple((i, j) for i in range(0, TILE, PEAK_STEP) for j in range(0, TILE, PEAK_STEP) if (i, j) != (0, 0))
RING = tuple((di, dj) for di in range(-2, 3) for dj in range(-2, 3) if max(abs(di), abs(dj)) == 2)
QUANTISATION_LEVELS = {"uint8": 255, "uint16": 65535}  # other sample types: as fine as 16-bit
TILE_ROWS_PER_CHUNK = 16  # tile rows transformed at once (bounds memory on large images)


def power_spectrum(image: torch.Tensor) -> torch.Tensor:
    """TILE x TILE power spectrum of a CxHxW image (H, W >= TILE), averaged over channels and half-overlapping tiles."""
    x = image.double()
    hann = torch.hann_window(TILE, periodic=True, dtype=x.dtype, device=x.device)
    window = hann[:, None] * hann[None, :]
    step = TILE // 2
    rows = x.unfold(1, TILE, step)  # C x tile-rows x W x TILE
    total = torch.zeros(TILE, TILE, dtype=x.dtype, device=x.device)
    count = 0
    for start in range(0, rows.shape[1], TILE_ROWS_PER_CHUNK):
        tiles = rows[:, start : start + TILE_ROWS_PER_CHUNK].unfold(2, TILE, step)  # C x rows x cols x TILE x TILE
        tiles = tiles - tiles.mean(dim=(-2, -1), keepdim=True)
        spectrum = torch.fft.fft2(tiles * window)
        total += (spectrum.real**2 + spectrum.imag**2).sum(dim=(0, 1, 2))
        count += tiles.shape[0] * tiles.shape[1] * tiles.shape[2]
    return total / (count * float((window**2).sum()))


def quantisation_power(sample_type: str) -> float:
    """Power of uniform quantisation noise of a sample type in [0, 1] units: step^2 / 12."""
    return (1.0 / QUANTISATION_LEVELS.get(sample_type, 65535)) ** 2 / 12.0


def peak_ratios(image: torch.Tensor, noise_power: float) -> torch.Tensor:
    """r(p) for the 15 peaks: power at p over the median power two bins around it, both + noise_power."""
    s = power_spectrum(image) + noise_power
    peaks = torch.tensor(PEAKS)
    ring = (peaks[:, None, :] + torch.tensor(RING)[None]) % TILE  # 15 x 16 x 2 bin indices
    floor = s[ring[..., 0], ring[..., 1]].median(dim=1).values
    return s[peaks[:, 0], peaks[:, 1]] / floor


def peak_ratio(image: torch.Tensor, noise_power: float) -> float:
    """10 log10 of the mean peak ratio r(p), in dB (NaN below TILE px): the score of an image without a target."""
    if min(image.shape[-2:]) < TILE:
        return math.nan
    return 10.0 * math.log10(float(peak_ratios(image, noise_power).mean()))


def checkerboard_score(output: torch.Tensor, target: torch.Tensor | None, sample_type: str = "uint8") -> float:
    """10 log10(mean over peaks of r_output / r_target) in dB (without a target: of r_output); CxHxW in [0, 1]."""
    q = quantisation_power(sample_type)
    if target is None or min(output.shape[-2:]) < TILE:
        return peak_ratio(output, q)
    return 10.0 * math.log10(float((peak_ratios(output, q) / peak_ratios(target, q)).mean()))
