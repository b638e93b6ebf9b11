"""Per-dataset value ranges: which sample values map to [-1, 1], computed per side from the training data.

Kinds (data.normalize):
  auto        8/16-bit unsigned data and floats within [0, 1]: the sample type's range (no statistics needed);
              anything else (HU, signed or 32-bit integers, floats beyond [0, 1]): minmax
  dtype       the sample type's full range; floats must lie in [0, 1]
  minmax      the smallest and largest value over the training data
  percentile  the percentile_low and percentile_high percentiles (values outside are clipped)
A DICOM window (center, width) fixes the range of a DICOM side to [center - width/2, center + width/2].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import NORMALIZE_KINDS
from ..errors import DataError
from .io import ValueRange

__all__ = ["NORMALIZE_KINDS", "ValueStats", "describe_range", "resolve_range", "samples_per_image", "value_stats"]
# Values kept per side for percentiles, spread over all images: bounded memory on any dataset size.
PERCENTILE_SAMPLES = 1_000_000


@dataclass(frozen=True)
class ValueStats:
    """Smallest and largest value of one image side, and a random sample of its values (for percentiles)."""

    low: float
    high: float
    sample: np.ndarray


def value_stats(arr: np.ndarray, sample_size: int, seed: int) -> ValueStats:
    """Statistics of one image (decoded, so its samples are finite: see data.io.check_samples)."""
    flat = arr.reshape(-1)
    if sample_size and flat.size > sample_size:
        sample = flat[np.random.default_rng(seed).integers(0, flat.size, sample_size)]
    else:
        sample = flat if sample_size else flat[:0]
    return ValueStats(float(flat.min()), float(flat.max()), np.asarray(sample, dtype=np.float64))


def samples_per_image(kind: str, images: int) -> int:
    """How many values each image contributes to the percentile sample (0 when no sample is needed)."""
    return max(256, PERCENTILE_SAMPLES // max(1, images)) if kind == "percentile" else 0


def resolve_range(
    kind: str,
    dtype: np.dtype | str,
    stats: list[ValueStats],
    percentiles: tuple[float, float] = (0.5, 99.5),
    window: ValueRange | None = None,
    where: str = "the data",
) -> ValueRange | None:
    """The value range of one side, or None where the sample type's own range applies."""
    if window is not None:
        return window
    dtype = np.dtype(dtype)
    low = min(s.low for s in stats)
    high = max(s.high for s in stats)
    is_float = dtype.kind == "f"
    if kind == "dtype":
        if dtype.kind in "ui" and dtype.itemsize > 2:
            raise DataError(
                f"{where}: {dtype} samples have no usable full range (the images would be blank); "
                "pass --normalize minmax or percentile, or convert the data to uint16 or float32"
            )
        if is_float and (low < 0.0 or high > 1.0):
            raise DataError(
                f"{where}: float values span [{low:.6g}, {high:.6g}], outside the [0, 1] that --normalize dtype "
                "assumes; pass --normalize minmax or percentile (or --dicom-window for DICOM)"
            )
        return None
    if kind == "auto":
        if dtype in (np.uint8, np.uint16) or (is_float and low >= 0.0 and high <= 1.0):
            return None
        kind = "minmax"
    if kind == "minmax":
        out = (low, high)
    else:
        values = np.concatenate([s.sample for s in stats])
        lo, hi = np.percentile(values, percentiles)
        out = (float(lo), float(hi))
    if not out[1] > out[0]:
        raise DataError(
            f"{where}: --normalize {kind} found a single value ({out[0]:.6g}); it cannot be mapped to a range, "
            "use --normalize dtype"
        )
    return out


def describe_range(value_range: ValueRange | None, dtype: str) -> str:
    """E.g. '[-1024, 3071] -> [-1, 1]' or 'uint8 range'."""
    if value_range is None:
        return f"{dtype} range" if np.dtype(dtype).kind in "ui" else f"{dtype} in [0, 1]"
    return f"[{value_range[0]:.6g}, {value_range[1]:.6g}]"
