"""Validation during training: score held-out pairs with the current generator and track the best step."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import RunConfig, recipe_class
from .data.io import read_image, strip_image_suffix, to_tensor
from .data.paired import Pair, PairedDataset, label_spec
from .data.unpaired import find_unpaired_files
from .errors import ConfigError, DataError
from .metrics import MetricProtocol, summarize
from .metrics.lpips import LPIPS, load_st_lpips
from .metrics.pixel import HIGHER_IS_BETTER
from .precision import full_precision
from .recipes.base import SR, UNPAIRED
from .scoring import ImageScorer, instance_map, list_hr_images, load_test_pairs, score_pairs, score_sr_image

# Cheap metrics always reported; the selection metric is added when it is another one.
REPORTED = ("psnr", "ssim", "l1", "checkerboard")


def validation_networks(names: list[str]) -> dict[str, LPIPS]:
    """The feature networks the validation metrics need: ST-LPIPS (AlexNet, from the installed package) when selected."""
    return {"st_lpips": load_st_lpips("alex", flag=None)} if "st_lpips" in names else {}


GRID_IMAGES = 4


@dataclass
class ValidationResult:
    """Mean metrics over the validation pairs, and a few (input, output, target) triplets in [-1, 1] for display."""

    means: dict[str, float]
    samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)


def split_off_validation(dataset: PairedDataset, fraction: float, seed: int) -> tuple[PairedDataset, list[Pair]]:
    """Hold out a seeded random fraction of the training pairs (at least one, leaving at least one)."""
    n = len(dataset)
    k = max(1, round(n * fraction))
    if n - k < 1:
        raise ConfigError(f"--val-fraction {fraction} leaves no training pairs out of {n}; use a smaller fraction")
    held = set(np.random.default_rng(seed).permutation(n)[:k].tolist())
    keep = [p for i, p in enumerate(dataset.pairs) if i not in held]
    val = [p for i, p in enumerate(dataset.pairs) if i in held]
    return dataset.with_pairs(keep), val


class SelectionMetric:
    """What every validator shares: whether a value of its selection metric beats the best so far."""

    higher_is_better: bool

    def is_better(self, value: float, best: float | None) -> bool:
        """Whether `value` of the selection metric beats the best so far (NaN never does)."""
        if not math.isfinite(value):
            return False
        return best is None or (value > best if self.higher_is_better else value < best)


class Validator(SelectionMetric):
    """Scores the generator on fixed pairs at their own size, in eval mode, without touching any RNG."""

    def __init__(self, pairs: list[Pair], layout: str, config: RunConfig, device: torch.device) -> None:
        v = config.validation
        self.network = recipe_class(config.recipe).generators(config)[config.data.direction]
        self.pairs = pairs[: v.max_items] if v.max_items else pairs
        self.layout = layout
        self.direction = config.data.direction
        self.metric = v.metric
        self.names = list(dict.fromkeys([*REPORTED, v.metric]))
        self.score = ImageScorer(
            self.names, MetricProtocol(sample_type=config.data.sample_type or "uint8"), validation_networks(self.names)
        )
        self.in_channels = config.generator.in_channels
        self.labels = label_spec(config.data)
        # Instance maps of the validation pairs: --val-instance-dir, else the training ones (held-out pairs).
        inst = v.instance_dir or config.data.instance_dir
        self.instance_dir = Path(inst) if inst and self.labels is not None else None
        if self.instance_dir is not None and not self.instance_dir.is_dir():
            raise ConfigError(f"{self.instance_dir}: --val-instance-dir is not a folder")
        self.in_range = (*config.data.input_range,) or None
        self.out_range = (*config.data.output_range,) or None
        self.device = device
        self.higher_is_better = HIGHER_IS_BETTER[v.metric]

    @classmethod
    def from_config(
        cls, config: RunConfig, dataset: PairedDataset, device: torch.device
    ) -> tuple[Validator | None, PairedDataset]:
        """The validator a config asks for (or None), and the training dataset left after any hold-out."""
        v = config.validation
        if v.fraction > 0:
            train_set, pairs = split_off_validation(dataset, v.fraction, config.train.seed)
            return cls(pairs, dataset.layout, config, device), train_set
        if v.root:
            layout, _, pairs = load_test_pairs(Path(v.root), v.phase, config.data.layout, config.data.nifti_axis)
            return cls(pairs, layout, config, device), dataset
        return None, dataset

    def _encode(self, arr: np.ndarray, pair: Pair) -> torch.Tensor:
        name = str(pair.a_path)
        if self.labels is not None:
            instances = None if self.instance_dir is None else instance_map(self.instance_dir, pair, arr)
            return self.labels.encode(arr[:, :, 0], instances, name)
        if arr.shape[2] != self.in_channels:
            raise DataError(
                f"{name}: validation input has {arr.shape[2]} channel(s); the model takes {self.in_channels}"
            )
        return to_tensor(arr, self.in_range)

    @torch.no_grad()
    def __call__(self, networks: dict[str, nn.Module]) -> ValidationResult:
        """Mean metrics of the generator's outputs over the validation pairs."""
        generator = networks[self.network]
        was_training = generator.training
        generator.eval()

        def translate(x: torch.Tensor) -> torch.Tensor:
            # In fp32 whatever the training precision, so the scores match `diptych evaluate` on the checkpoint (which
            # runs the network with batch norms folded: equal to float rounding).
            with full_precision():
                return generator(x.to(self.device)).float().cpu()

        per_image: dict[str, list[float]] = {n: [] for n in self.names}
        samples = []
        try:
            scored = score_pairs(
                translate,
                self._encode,
                self.pairs,
                self.layout,
                self.direction,
                self.score,
                self.out_range,
            )
            for _, a, b, out, values in scored:
                for n, val in values.items():
                    per_image[n].append(val)
                if len(samples) < GRID_IMAGES:
                    samples.append((to_tensor(a, self.in_range), out, to_tensor(b, self.out_range)))
        finally:
            generator.train(was_training)
        return ValidationResult({n: summarize(v).mean for n, v in per_image.items()}, samples)


class CycleValidator(SelectionMetric):
    """Scores an unpaired method on held-out images of both domains, at their own size, in eval mode: the round trip
    X -> G(X) -> F(G(X)) against X per direction (cycle_<metric>_A, _B and their mean cycle_<metric>), and, where
    domain B holds an image of the same name as one in A, the A -> B translation against it (<metric>)."""

    def __init__(self, files: dict[str, list[Path]], config: RunConfig, device: torch.device) -> None:
        v, d = config.validation, config.data
        self.files = {side: found[: v.max_items] if v.max_items else found for side, found in files.items()}
        self.generators = recipe_class(config.recipe).generators(config)
        self.names = list(dict.fromkeys([*REPORTED, v.metric]))
        self.ranges = {"A": (*d.input_range,) or None, "B": (*d.output_range,) or None}
        networks = validation_networks(self.names)
        self.scores = {
            "A": ImageScorer(self.names, MetricProtocol(sample_type=d.input_sample_type or "uint8"), networks),
            "B": ImageScorer(self.names, MetricProtocol(sample_type=d.sample_type or "uint8"), networks),
        }
        self.channels = {"A": config.generator.in_channels, "B": config.generator.out_channels}
        stems = {side: {strip_image_suffix(p).name: p for p in found} for side, found in self.files.items()}
        self.pairs = [(p, stems["B"][n]) for n, p in stems["A"].items() if n in stems["B"]]
        self.metric = v.metric if self.pairs else f"cycle_{v.metric}"
        self.device = device
        self.higher_is_better = HIGHER_IS_BETTER[v.metric]

    @classmethod
    def from_config(cls, config: RunConfig, device: torch.device) -> CycleValidator | None:
        """The validator --val-data asks for (None without one); --val-fraction has no pairs to hold out."""
        v = config.validation
        if v.fraction > 0:
            raise ConfigError(
                f"--val-fraction: --recipe {config.recipe} trains on unpaired domains; give held-out images of both "
                "with --val-data DIR (valA/ valB/, or A/ B/ folders)"
            )
        if not v.root:
            return None
        files = find_unpaired_files(Path(v.root), v.phase)
        return cls(dict(zip("AB", files, strict=True)), config, device)

    def _read(self, path: Path, side: str) -> torch.Tensor:
        arr = read_image(path)
        if arr.shape[2] != self.channels[side]:
            raise DataError(
                f"{path}: has {arr.shape[2]} channel(s); domain {side} of this model has {self.channels[side]}"
            )
        return to_tensor(arr, self.ranges[side])

    @torch.no_grad()
    def __call__(self, networks: dict[str, nn.Module]) -> ValidationResult:
        """Mean round-trip (and, for pairs, translation) metrics over the validation images."""
        there, back = networks[self.generators["AtoB"]], networks[self.generators["BtoA"]]
        modes = [there.training, back.training]
        there.eval()
        back.eval()

        def run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
            with full_precision():  # (scores as `diptych evaluate` computes them, whatever the training precision)
                return net(x[None].to(self.device)).float().cpu()[0]

        per_image: dict[str, list[float]] = {}
        samples = []
        try:
            for side, (forward, backward) in (("A", (there, back)), ("B", (back, there))):
                for path in self.files[side]:
                    x = self._read(path, side)
                    out = run(forward, x)
                    rec = run(backward, out.clamp(-1, 1))
                    for n, val in self.scores[side](rec, x).items():
                        per_image.setdefault(f"cycle_{n}_{side}", []).append(val)
                        per_image.setdefault(f"cycle_{n}", []).append(val)
                    if side == "A" and len(samples) < GRID_IMAGES:
                        samples.append((x, out, rec))
            for a_path, b_path in self.pairs:
                out = run(there, self._read(a_path, "A"))
                for n, val in self.scores["B"](out, self._read(b_path, "B")).items():
                    per_image.setdefault(n, []).append(val)
        finally:
            there.train(modes[0])
            back.train(modes[1])
        return ValidationResult({n: summarize(v).mean for n, v in per_image.items()}, samples)


class SRValidator(SelectionMetric):
    """Scores a super-resolution generator on held-out HR images (--val-data): each made into LR as evaluation does
    (the run's degradation, seeded per image), upscaled in eval mode and fp32, scored on the Y channel with a border of
    the scale (the papers' protocol; 1-channel images as they are); val_bicubic_<metric> is the bicubic baseline."""

    def __init__(self, files: list[Path], config: RunConfig, device: torch.device) -> None:
        from .recipes.sr import degradation_of  # (the SR recipes import this module's package)

        v = config.validation
        self.files = files[: v.max_items] if v.max_items else files
        self.network = recipe_class(config.recipe).generators(config)[config.data.direction]
        self.scale = config.generator.geometry().scale
        self.channels = config.generator.in_channels
        self.degradation = degradation_of(config)
        self.seed = config.train.seed
        self.metric = v.metric
        self.names = list(dict.fromkeys([*REPORTED, v.metric]))
        channels = "y" if self.channels in (1, 3) else "all"
        self.protocol = MetricProtocol(channels, self.scale, config.data.sample_type or "uint8")
        self.device = device
        self.higher_is_better = HIGHER_IS_BETTER[v.metric]
        self.networks = validation_networks(self.names)  # (--val-metric st_lpips: on RGB inside the border)

    @classmethod
    def from_config(cls, config: RunConfig, device: torch.device) -> SRValidator | None:
        """The validator --val-data asks for (None without one); --val-fraction would hold out training crops."""
        v = config.validation
        if v.fraction > 0:
            raise ConfigError(
                f"--val-fraction: --recipe {config.recipe} validates on whole held-out HR images; give a folder of "
                "them with --val-data DIR"
            )
        if not v.root:
            return None
        return cls(list_hr_images(Path(v.root), v.phase)[1], config, device)

    @torch.no_grad()
    def __call__(self, networks: dict[str, nn.Module]) -> ValidationResult:
        """Mean metrics of the generator (and of bicubic) over the held-out HR images."""
        generator = networks[self.network]
        was_training = generator.training
        generator.eval()

        def upscale(x: torch.Tensor) -> torch.Tensor:
            with full_precision():  # (scores as `diptych evaluate` computes them, whatever the training precision)
                return generator(x.to(self.device)).float().cpu()

        per_image: dict[str, list[float]] = {}
        samples = []
        try:
            for index, path in enumerate(self.files):
                rng = np.random.default_rng([self.seed, index])
                scored = score_sr_image(
                    path,
                    rng,
                    upscale,
                    self.degradation,
                    self.scale,
                    self.channels,
                    self.names,
                    self.protocol,
                    networks=self.networks,
                )
                for n, val in scored.values.items():
                    per_image.setdefault(n, []).append(val)
                if len(samples) < GRID_IMAGES:  # (the bicubic upscale stands for the input: one size per grid row)
                    samples.append((scored.baseline, scored.output, scored.hr))
        finally:
            generator.train(was_training)
        return ValidationResult({n: summarize(v).mean for n, v in per_image.items()}, samples)


def make_validator(config: RunConfig, dataset: Any, device: torch.device) -> tuple[Any, Any]:
    """The validator of the run's kind of data (or None), and the training dataset left after any hold-out."""
    kind = recipe_class(config.recipe).data_kind
    if kind == UNPAIRED:
        return CycleValidator.from_config(config, device), dataset
    if kind == SR:
        return SRValidator.from_config(config, device), dataset
    return Validator.from_config(config, dataset, device)
