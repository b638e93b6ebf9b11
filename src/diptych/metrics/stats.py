"""Summaries of per-image metric values: mean, standard deviation and a Student-t 95% confidence interval."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class MetricSummary:
    """Mean of n per-image values with its 95% confidence interval (t distribution, n - 1 dof)."""

    mean: float
    std: float
    n: int
    ci95_low: float
    ci95_high: float

    def to_dict(self) -> dict[str, float | int]:
        """JSON-friendly form."""
        return asdict(self)


def summarize(values: list[float] | np.ndarray) -> MetricSummary:
    """Mean, sample std and 95% CI of the finite values (NaN/inf, e.g. PSNR of identical images, are dropped)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return MetricSummary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(arr.mean())
    if n == 1:
        return MetricSummary(mean, 0.0, 1, math.nan, math.nan)
    std = float(arr.std(ddof=1))
    from scipy import stats  # here: scipy's import is slow and only evaluations need it

    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return MetricSummary(mean, std, n, mean - half, mean + half)
