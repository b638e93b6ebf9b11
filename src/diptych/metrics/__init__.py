"""Image-quality metrics with a documented protocol: per image, and as means with 95% confidence intervals."""

from .pixel import (
    DEFAULT_METRICS,
    PIXEL_METRICS,
    MetricProtocol,
    compute_pixel_metrics,
    validate_metric_names,
)
from .stats import MetricSummary, summarize

__all__ = [
    "DEFAULT_METRICS",
    "PIXEL_METRICS",
    "MetricProtocol",
    "MetricSummary",
    "compute_pixel_metrics",
    "summarize",
    "validate_metric_names",
]
