"""Scoring translated pairs against their targets: shared by evaluation and validation during training."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from .data.io import ValueRange, from_tensor, read_image, to_tensor
from .data.paired import LabelSpec, Pair, check_pairs, find_pairs, read_pair_arrays
from .data.transforms import JointTransform
from .errors import DataError
from .metrics import MetricProtocol, compute_pixel_metrics
from .metrics.lpips import LPIPS, lpips_distance
from .metrics.pixel import PIXEL_METRICS


class ImageScorer:
    """Per-image metrics of an output against its target (CxHxW in [-1, 1]): the pixel metrics under a protocol, and
    distances from loaded feature networks (`networks`: metric name -> (ST-)LPIPS model)."""

    def __init__(self, names: list[str], protocol: MetricProtocol, networks: dict[str, LPIPS] | None = None) -> None:
        self.names = list(names)
        self.protocol = protocol
        self.networks = dict(networks or {})
        self.pixel_names = [n for n in self.names if n in PIXEL_METRICS]
        unknown = [n for n in self.names if n not in PIXEL_METRICS and n not in self.networks]
        if unknown:
            raise ValueError(f"no network loaded for metric(s) {unknown}")

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        values = compute_pixel_metrics(output, target, self.pixel_names, self.protocol)
        for name in self.names:
            if name in self.networks:
                values[name] = lpips_distance(self.networks[name], output, target)
        return {n: values[n] for n in self.names}


def load_test_pairs(root: Path, phase: str, layout: str = "auto", nifti_axis: int = 2) -> tuple[str, Path, list[Pair]]:
    """Find and check a test split: every input must have a target of the same size (volumes: per slice)."""
    layout, base, pairs = find_pairs(Path(root), layout, phase, nifti_axis=nifti_axis)
    good, _, _ = check_pairs(pairs, layout, JointTransform("none", flip=False), skip_bad=False)
    return layout, base, good


def read_pair(pair: Pair, layout: str, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """The (input, target) arrays of a pair, honouring the aligned layout, volume slices and the direction."""
    a, b = read_pair_arrays(pair, layout)
    return (a, b) if direction == "AtoB" else (b, a)


def instance_map(instance_dir: Path, pair: Pair, labels: np.ndarray) -> np.ndarray:
    """The instance-id map named like a pair's label map in `instance_dir`, checked to have the label map's size."""
    path = LabelSpec(1, None, instance_dir).instance_path(pair)
    instances = read_image(path)
    if instances.shape[:2] != labels.shape[:2]:
        raise DataError(f"{path}: size differs from its label map {pair.a_path}")
    return instances


def score_pairs(
    translate: Callable[[torch.Tensor], torch.Tensor],
    encode: Callable[[np.ndarray, Pair], torch.Tensor],
    pairs: list[Pair],
    layout: str,
    direction: str,
    score: Callable[[torch.Tensor, torch.Tensor], dict[str, float]],
    out_range: ValueRange | None = None,
) -> Iterator[tuple[Pair, np.ndarray, np.ndarray, torch.Tensor, dict[str, float]]]:
    """Translate each pair's input at its own size and score the output: yields (pair, input, target, output, metrics).

    Outputs and targets are compared in [-1, 1] under the model's output value range (None: the sample type's)."""
    for pair in pairs:
        a, b = read_pair(pair, layout, direction)
        # Score what is written: the output rounded to the data's sample type, not the raw float.
        out = to_tensor(from_tensor(translate(encode(a, pair)[None])[0], b.dtype, out_range), out_range)
        target = to_tensor(b, out_range)
        if out.shape[0] != target.shape[0]:
            raise DataError(
                f"{pair.b_path}: target has {target.shape[0]} channel(s) but the model outputs {out.shape[0]}"
            )
        yield pair, a, b, out, score(out, target)
