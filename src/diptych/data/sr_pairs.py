"""Super-resolution training pairs: LR/HR crops at the same place, from HR images alone or from LR/HR folders.

Crops are defined in LR pixels: an LR crop of `lr_crop` px matches an HR crop of lr_crop * scale px. From a folder of
HR images, the HR crop is cut at a random place and its LR made on the fly, by MATLAB bicubic (the classical SR
input) or by the Real-ESRGAN degradation. From LR/HR folders, the LR crop is cut at a random place (y, x) and the HR
crop at (y * scale, x * scale). Items are keyed by (index, epoch_seed) as distributed.EpochSampler yields them
(epoch_seed = seed * 1_000_003 + epoch), and every random draw (crop place, flips, degradation) comes from generators
seeded by that key alone, so a resumed run, every DDP rank and every worker make the same LR for the same key.
Tensors are C x H x W in [-1, 1] under the data's value range, as elsewhere in diptych.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .checks import run_all
from .degradations import DegradationConfig, degrade
from .io import IMAGE_EXTENSIONS, ValueRange, dtype_range, list_images, read_image, to_tensor
from .paired import DatasetSummary, Pair, keep_consistent, match_folders
from .resize import bicubic_downscale
from .unpaired import Domain, ImageInfo, domain_items, read_item

MAX_SCALE = 16


@dataclass(frozen=True)
class SRCrop:
    """Where and how training crops are cut: LR side `lr_crop`, HR side lr_crop * scale, random flips and 90-degree
    rotations (the same for LR and HR)."""

    scale: int
    lr_crop: int
    flip: bool = True
    rotate: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.scale, int) or not 1 <= self.scale <= MAX_SCALE:
            raise ConfigError(f"--scale {self.scale}: must be an integer in [1, {MAX_SCALE}]")
        if not isinstance(self.lr_crop, int) or self.lr_crop < 1:
            raise ConfigError(f"--lr-crop {self.lr_crop}: must be a positive integer (LR pixels)")

    @property
    def hr_crop(self) -> int:
        """The HR crop's side: lr_crop * scale."""
        return self.lr_crop * self.scale

    def check(self, height: int, width: int, name: str) -> None:
        """Raise DataError if an HR image of this size cannot give an HR crop."""
        if height < self.hr_crop or width < self.hr_crop:
            raise DataError(
                f"{name}: {width}x{height} is smaller than the HR crop {self.hr_crop}x{self.hr_crop} "
                f"(--lr-crop {self.lr_crop} x --scale {self.scale}); use a smaller --lr-crop or remove the image"
            )

    def augment(self, images: list[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
        """One random draw of horizontal flip, vertical flip and transpose, applied to every C x H x W tensor (the
        three are always drawn, so switching one off leaves the others' draws unchanged)."""
        hflip, vflip, transpose = (rng.uniform(size=3) < 0.5).tolist()
        out = []
        for x in images:
            x = x.flip(-1) if self.flip and hflip else x
            x = x.flip(-2) if self.rotate and vflip else x
            out.append(x.transpose(-2, -1) if self.rotate and transpose else x)
        return out


def sample_levels(sample_type: str, value_range: ValueRange | None) -> int | None:
    """Steps of an integer sample type across the value range (255 for 8-bit data): made LR images are rounded to
    them, as a saved LR file would be; None for floating-point data (never rounded)."""
    if np.dtype(sample_type).kind not in "ui":
        return None
    low, high = value_range or dtype_range(sample_type)
    return max(1, round(high - low))


def make_lr(
    hr: torch.Tensor, scale: int, rng: np.random.Generator, degradation: DegradationConfig | None, levels: int | None
) -> torch.Tensor:
    """The LR image of an HR crop (C x H x W in [0, 1]): MATLAB bicubic without a degradation config, else the
    Real-ESRGAN degradation drawn from `rng`; in [0, 1], rounded to `levels` steps when given."""
    if degradation is not None:
        return degrade(hr, scale, rng, degradation, levels)
    lr = bicubic_downscale(hr, scale).clamp_(0.0, 1.0)
    return (lr * levels).round_() / levels if levels else lr


def _streams(index: int, seed: int) -> list[np.random.Generator]:
    """Independent generators for the crop and augmentation, and for the degradation, fixed by the key alone."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(2)]


class HRFolderDataset(Dataset):
    """Yields {"LR", "HR", "name"} from HR images alone: a random HR crop and the LR made of it; keys may be an index
    or (index, epoch_seed)."""

    def __init__(
        self, items: list[Pair], crop: SRCrop, domain: Domain, degradation: DegradationConfig | None = None
    ) -> None:
        self.items = items
        self.crop = crop
        self.domain = domain
        self.degradation = degradation
        self.levels = sample_levels(domain.sample_type, domain.value_range)
        self.skipped: tuple[str, ...] = ()  # what open_hr_folder(skip_bad=True) left out, one message each

    def __len__(self) -> int:
        return len(self.items)

    @property
    def summary(self) -> DatasetSummary:
        """What configures the networks: channels, sample type, values; the HR crop as the smallest side."""
        how = "HR images, LR made by " + ("degradation" if self.degradation else "bicubic")
        return sr_summary(self.domain, self.crop, how, self.skipped)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, object]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        crop_rng, lr_rng = _streams(index, seed)
        item = self.items[index]
        arr = read_item(item)
        size = self.crop.hr_crop
        self.crop.check(arr.shape[0], arr.shape[1], item.where())  # (the file may have changed since it was checked)
        y = int(crop_rng.integers(arr.shape[0] - size + 1))
        x = int(crop_rng.integers(arr.shape[1] - size + 1))
        hr = to_tensor(arr[y : y + size, x : x + size], self.domain.value_range)
        (hr,) = self.crop.augment([hr], crop_rng)
        lr = make_lr(hr.add(1.0).mul_(0.5), self.crop.scale, lr_rng, self.degradation, self.levels)
        return {"LR": lr.mul_(2.0).sub_(1.0), "HR": hr, "name": item.name}


class LRHRFolderDataset(Dataset):
    """Yields {"LR", "HR", "name"} from LR/HR file pairs: crops at the same place; keys may be an index or
    (index, epoch_seed)."""

    def __init__(self, pairs: list[Pair], crop: SRCrop, domain: Domain) -> None:
        self.pairs = pairs
        self.crop = crop
        self.domain = domain
        self.skipped: tuple[str, ...] = ()  # what open_lr_hr_folders(skip_bad=True) left out, one message each

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def summary(self) -> DatasetSummary:
        """What configures the networks: channels, sample type, values; the HR crop as the smallest side."""
        return sr_summary(self.domain, self.crop, "LR/HR pairs", self.skipped)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, object]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        crop_rng, _ = _streams(index, seed)
        pair = self.pairs[index]
        lr_arr, hr_arr = read_image(pair.a_path), read_image(pair.b_path)
        check_scaled_pair(lr_arr.shape, hr_arr.shape, pair, self.crop)  # (the files may have changed since)
        self.crop.check(hr_arr.shape[0], hr_arr.shape[1], str(pair.b_path))
        n, s = self.crop.lr_crop, self.crop.scale
        y = int(crop_rng.integers(lr_arr.shape[0] - n + 1))
        x = int(crop_rng.integers(lr_arr.shape[1] - n + 1))
        lr = to_tensor(lr_arr[y : y + n, x : x + n], self.domain.value_range)
        hr = to_tensor(hr_arr[y * s : (y + n) * s, x * s : (x + n) * s], self.domain.value_range)
        lr, hr = self.crop.augment([lr, hr], crop_rng)
        return {"LR": lr, "HR": hr, "name": pair.name}


def sr_summary(domain: Domain, crop: SRCrop, layout: str, skipped: tuple[str, ...] = ()) -> DatasetSummary:
    """A DatasetSummary of SR training data (both sides are the domain; the smallest side seen is the HR crop)."""
    return DatasetSummary(
        layout,
        Path(domain.root),
        domain.channels,
        domain.channels,
        domain.sample_type,
        min_side=crop.hr_crop,
        skipped=skipped,
        in_range=domain.value_range,
        out_range=domain.value_range,
        in_dtype=domain.sample_type,
    )


def check_scaled_pair(lr_shape: tuple[int, ...], hr_shape: tuple[int, ...], pair: Pair, crop: SRCrop) -> None:
    """Raise DataError naming the HR file unless it is exactly `scale` times its LR partner, with as many channels."""
    (lh, lw), (hh, hw), s = lr_shape[:2], hr_shape[:2], crop.scale
    if (hh, hw) != (lh * s, lw * s):
        raise DataError(
            f"{pair.b_path}: HR size {hw}x{hh} is not {s} x its LR partner {pair.a_path} ({lw}x{lh}, so "
            f"{lw * s}x{lh * s} expected); resize or crop one of them, or check --scale"
        )
    if lr_shape[2:] != hr_shape[2:]:
        raise DataError(
            f"{pair.b_path}: has {hr_shape[2]} channel(s) but its LR partner {pair.a_path} has {lr_shape[2]}; "
            "convert them to one channel count"
        )


def _inspect_hr(item: Pair) -> ImageInfo:
    arr = read_item(item)
    return ImageInfo(arr.shape[0], arr.shape[1], arr.shape[2], str(arr.dtype))


def _inspect_lr_hr(pair: Pair, crop: SRCrop) -> ImageInfo:
    lr, hr = read_image(pair.a_path), read_image(pair.b_path)
    check_scaled_pair(lr.shape, hr.shape, pair, crop)
    if lr.dtype != hr.dtype:
        raise DataError(
            f"{pair.b_path}: holds {hr.dtype} samples but its LR partner {pair.a_path} holds {lr.dtype}; "
            "convert them to one sample type"
        )
    return ImageInfo(hr.shape[0], hr.shape[1], hr.shape[2], str(hr.dtype))


def _report_skipped(bad: list[str]) -> None:
    if bad:
        print(f"diptych: skipped {len(bad)} bad image(s):", file=sys.stderr)
        for msg in bad:
            print(f"  {msg}", file=sys.stderr)


def _domain(infos: list[ImageInfo], value_range: ValueRange | None, root: Path) -> Domain:
    ref = infos[0]
    return Domain(ref.channels, ref.dtype, value_range, len(infos), str(root))


def open_hr_folder(
    root: Path,
    crop: SRCrop,
    degradation: DegradationConfig | None = None,
    *,
    value_range: ValueRange | None = None,
    skip_bad: bool = False,
    max_items: int = 0,
    nifti_axis: int = 2,
    workers: int = 4,
) -> HRFolderDataset:
    """Find and check the HR images of a folder (recursively; every format diptych reads; NIfTI volumes by slice):
    readable, one channel count and sample type, each at least lr_crop * scale a side; LR is made on the fly by
    MATLAB bicubic, or by the Real-ESRGAN degradation when `degradation` is given. value_range: the samples that map
    to [-1, 1] (None: the sample type's range)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass the folder of HR images")
    files = list_images(root)
    if not files:
        raise DataError(f"{root}: holds no images (looked for {' '.join(IMAGE_EXTENSIONS)}); add the HR images there")
    if degradation is not None:
        degradation.check()
    bad: list[str] = []
    items = domain_items(root, files, nifti_axis, bad if skip_bad else None)
    items = items[:max_items] if max_items else items
    results = run_all(items, _inspect_hr, workers)
    good, infos, skipped = keep_consistent(items, results, crop, skip_bad, Pair.where, "earlier HR images")
    _report_skipped(bad + skipped)
    if not good:
        raise DataError(f"{root}: no usable HR images left after skipping {len(bad) + len(skipped)} bad one(s)")
    dataset = HRFolderDataset(good, crop, _domain(infos, value_range, root), degradation)
    dataset.skipped = tuple(bad + skipped)
    return dataset


def open_lr_hr_folders(
    lr_dir: Path,
    hr_dir: Path,
    crop: SRCrop,
    *,
    value_range: ValueRange | None = None,
    skip_bad: bool = False,
    max_items: int = 0,
    workers: int = 4,
) -> LRHRFolderDataset:
    """Match LR and HR images by relative name and check every pair: HR exactly `scale` x its LR (the file named when
    not), one channel count and sample type, the LR at least lr_crop a side. value_range as for open_hr_folder."""
    for folder, what in ((lr_dir, "LR"), (hr_dir, "HR")):
        if not Path(folder).is_dir():
            raise DataError(f"{folder}: not a folder; pass the folder of {what} images")
    bad: list[str] = []
    pairs = match_folders(Path(lr_dir), Path(hr_dir), bad if skip_bad else None)
    pairs = pairs[:max_items] if max_items else pairs
    results = run_all(pairs, lambda p: _inspect_lr_hr(p, crop), workers)
    # (the HR side holds the crop exactly when the LR side holds lr_crop: HR = scale x LR was checked first)
    good, infos, skipped = keep_consistent(pairs, results, crop, skip_bad, lambda p: str(p.b_path), "earlier HR images")
    _report_skipped(bad + skipped)
    if not good:
        raise DataError(f"{hr_dir}: no usable LR/HR pairs left after skipping {len(bad) + len(skipped)} bad one(s)")
    dataset = LRHRFolderDataset(good, crop, _domain(infos, value_range, Path(hr_dir)))
    dataset.skipped = tuple(bad + skipped)
    return dataset
