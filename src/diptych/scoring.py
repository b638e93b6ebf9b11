"""Scoring translated pairs against their targets: shared by evaluation and validation during training."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.degradations import DegradationConfig
from .data.io import IMAGE_EXTENSIONS, ValueRange, from_tensor, list_images, read_image, to_tensor
from .data.paired import LabelSpec, Pair, check_pairs, find_pairs, read_pair_arrays
from .data.resize import bicubic_upscale, modcrop
from .data.sr_pairs import make_lr, sample_levels
from .data.transforms import JointTransform
from .errors import DataError
from .metrics import MetricProtocol, compute_pixel_metrics
from .metrics.lpips import LPIPS, lpips_distance
from .metrics.pixel import BASELINE_PREFIX, PIXEL_METRICS


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


@dataclass(frozen=True)
class SRScore:
    """One HR image scored as super-resolution: the HR (array, and [-1, 1] tensor), the LR made of it, the model's
    and bicubic's upscales as they would be written, and the metrics of both (bicubic's prefixed)."""

    hr_array: np.ndarray
    hr: torch.Tensor
    lr: torch.Tensor
    output: torch.Tensor
    baseline: torch.Tensor
    values: dict[str, float]


def list_hr_images(root: Path, phase: str) -> tuple[Path, list[Path]]:
    """The folder of HR images (root, or its `phase` sub-folder when it has one) and its images."""
    folder = root / phase if phase and (root / phase).is_dir() else root
    if not folder.is_dir():
        raise DataError(f"{root}: not a folder; pass the folder of HR images")
    files = list_images(folder)
    if not files:
        raise DataError(f"{folder}: holds no images (looked for {' '.join(IMAGE_EXTENSIONS)}); add the HR images")
    return folder, files


def score_sr_image(
    path: Path,
    rng: np.random.Generator,
    upscale: Callable[[torch.Tensor], torch.Tensor],
    degradation: DegradationConfig | None,
    scale: int,
    channels: int,
    names: list[str],
    protocol: MetricProtocol,
    value_range: ValueRange | None = None,
    networks: dict[str, LPIPS] | None = None,
) -> SRScore:
    """Crop an HR image to a multiple of the scale, make its LR (MATLAB bicubic, or the degradation drawn from `rng`)
    rounded to the data's levels, upscale it with `upscale` (a 1 x C x h x w batch in [-1, 1]) and with MATLAB
    bicubic, round both to the sample type and score them against the HR. `networks`: (ST-)LPIPS models by metric
    name, scored on RGB with the protocol's border crop (not on Y)."""
    hr_array = modcrop(read_image(path), scale)
    if min(hr_array.shape[:2]) < scale:
        raise DataError(f"{path}: {hr_array.shape[1]}x{hr_array.shape[0]} is smaller than the scale {scale}")
    if hr_array.shape[2] != channels:
        raise DataError(f"{path}: has {hr_array.shape[2]} channel(s); the model takes {channels}")
    hr = to_tensor(hr_array, value_range)
    levels = sample_levels(hr_array.dtype.name, value_range)
    lr = make_lr(hr.add(1.0).mul_(0.5), scale, rng, degradation, levels).mul_(2.0).sub_(1.0)
    output = _as_written(upscale(lr[None])[0], hr_array.dtype, value_range)
    baseline = _as_written(bicubic_upscale(lr, scale).clamp_(-1.0, 1.0), hr_array.dtype, value_range)
    values: dict[str, float] = {}
    for prefix, image in (("", output), (BASELINE_PREFIX, baseline)):
        scores = compute_pixel_metrics(image, hr, [n for n in names if n in PIXEL_METRICS], protocol)
        b = protocol.crop_border
        for name, model in (networks or {}).items():
            if name in names:
                crop = (slice(None), slice(b, image.shape[1] - b), slice(b, image.shape[2] - b))
                scores[name] = lpips_distance(model, image[crop], hr[crop])
        values.update({f"{prefix}{n}": scores[n] for n in names})
    return SRScore(hr_array, hr, lr, output, baseline, values)


def _as_written(image: torch.Tensor, dtype: np.dtype, value_range: ValueRange | None) -> torch.Tensor:
    """An image as it would be saved: rounded to the data's sample type, back in [-1, 1]."""
    return to_tensor(from_tensor(image, dtype, value_range), value_range)
