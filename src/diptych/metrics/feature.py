"""Set-level metrics on deep features: FID and KID (torchmetrics) with an Inception-v3 from a local weights file."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from ..errors import ConfigError
from .inception import load_inception

SET_METRICS = ("fid", "kid")


def as_rgb01(img: torch.Tensor) -> torch.Tensor:
    """BxCxHxW in [-1, 1] -> Bx3xHxW in [0, 1]: grey repeated, extra channels (alpha, bands) dropped."""
    x = (img.float().clamp(-1, 1) + 1) / 2
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] == 2:
        return x[:, :1].expand(-1, 3, -1, -1)
    return x[:, :3]


class FeatureDistances:
    """Accumulates features of generated and real images; computes FID and/or KID over the whole set."""

    def __init__(
        self, names: list[str], feature: nn.Module, device: torch.device | str = "cpu", kid_subset_size: int = 1000
    ) -> None:
        unknown = [n for n in names if n not in SET_METRICS]
        if unknown:
            raise ConfigError(f"unknown set metric(s) {unknown}; choose from {', '.join(SET_METRICS)}")
        self.names = names
        self.kid_subset_size = kid_subset_size
        self.count = 0
        self.metrics: dict[str, FrechetInceptionDistance | KernelInceptionDistance] = {}
        if "fid" in names:
            self.metrics["fid"] = FrechetInceptionDistance(feature=feature, normalize=True).to(device)
        if "kid" in names:
            # subset_size is fixed at construction; compute() re-creates it when there are fewer images.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
                self.metrics["kid"] = KernelInceptionDistance(
                    feature=feature, normalize=True, subset_size=kid_subset_size
                ).to(device)

    @torch.no_grad()
    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        """Add a batch of generated and real images (BxCxHxW in [-1, 1])."""
        self.add(real, real=True)
        self.add(fake, real=False)

    @torch.no_grad()
    def add(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch (BxCxHxW in [-1, 1]) of real or of generated images (unpaired sets differ in size)."""
        images = as_rgb01(images)
        for metric in self.metrics.values():
            metric.update(images, real=real)
        if not real:
            self.count += images.shape[0]

    def compute(self) -> dict[str, float]:
        """FID (and KID mean) over everything added; needs at least 2 images."""
        if self.count < 2:
            raise ConfigError("FID/KID need at least 2 images")
        out: dict[str, float] = {}
        if "fid" in self.metrics:
            out["fid"] = float(self.metrics["fid"].compute())
        if "kid" in self.metrics:
            kid = self.metrics["kid"]
            kid.subset_size = min(self.kid_subset_size, self.count)
            mean, _ = kid.compute()
            out["kid"] = float(mean)
        return out


def inception_distances(
    names: list[str], weights: str | Path | None, variant: str, device: torch.device | str
) -> FeatureDistances:
    """FeatureDistances with Inception-v3 features; a clear error when no weights file is given."""
    if weights is None:
        raise ConfigError(
            f"{'/'.join(names).upper()} needs Inception-v3 weights: pass --inception-weights FILE "
            "(pytorch-fid's pt_inception-2015-12-05-*.pth, or torchvision's inception_v3_google-*.pth with "
            "--inception-variant torchvision); diptych never downloads weights"
        )
    return FeatureDistances(names, load_inception(Path(weights), variant).to(device), device)
