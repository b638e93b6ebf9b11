"""Unpaired datasets: two domains of images with no correspondence (CycleGAN's trainA/ trainB/, or A/ and B/
folders whose names and counts differ), each with its own channels, sample type and value range.

A and B name the folders, not a translation direction: an unpaired method learns both directions, and which one to
apply is chosen at inference. Items are keyed by (index, epoch_seed) as distributed.EpochSampler yields them; A is
files_A[index % len(A)], and B is drawn independently with a generator seeded by (epoch_seed, index) alone, so a
resumed run, every DDP rank and every worker process draw the same B for the same key.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import ConfigError, DataError
from .checks import run_all
from .io import IMAGE_EXTENSIONS, ValueRange, list_images, read_image, strip_image_suffix, to_tensor
from .normalize import ValueStats, describe_range, samples_per_image, value_stats
from .paired import (
    Pair,
    check_batchable,
    check_dataset_root,
    data_range,
    expand_volumes,
    folder_sides,
    is_unpaired_layout,
    keep_consistent,
    resolve_layout,
)
from .transforms import JointTransform

DOMAINS = ("A", "B")
SPLITS = ("train", "val", "test")  # phases looked for when naming what a CycleGAN-layout folder holds
# auto: trainA/ trainB/ (CycleGAN's layout) when the phase has such a folder, else A/ and B/ folders.
UNPAIRED_LAYOUTS = ("auto", "cyclegan", "folders")


@dataclass(frozen=True)
class Domain:
    """One domain of an unpaired dataset: its images' channels, sample type and value range (None: the sample type's
    own), how many images it holds and the folder they came from."""

    channels: int
    sample_type: str
    value_range: ValueRange | None
    count: int
    root: str

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (for a checkpoint's manifest)."""
        value_range = None if self.value_range is None else [self.value_range[0], self.value_range[1]]
        return {
            "channels": self.channels,
            "sample_type": self.sample_type,
            "value_range": value_range,
            "count": self.count,
            "root": self.root,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Domain:
        """The domain a to_json() dict describes."""
        stored = data["value_range"]
        value_range = None if stored is None else (float(stored[0]), float(stored[1]))  # type: ignore[index]
        return cls(
            int(data["channels"]),  # type: ignore[call-overload]
            str(data["sample_type"]),
            value_range,
            int(data["count"]),  # type: ignore[call-overload]
            str(data["root"]),
        )

    def describe(self) -> str:
        """E.g. '12 image(s) of 1 x uint16, [0, 4095]'."""
        return (
            f"{self.count} image(s) of {self.channels} x {self.sample_type}, "
            f"{describe_range(self.value_range, self.sample_type)}"
        )


@dataclass(frozen=True)
class UnpairedSummary:
    """Facts about a checked unpaired dataset that configure the networks: one Domain per folder."""

    layout: str
    root: Path
    a: Domain
    b: Domain
    min_side: int = 0
    min_side_file: str = ""  # the image holding the smallest side (named when it is too small)
    skipped: tuple[str, ...] = ()

    def domain(self, name: str) -> Domain:
        """Domain "A" or "B"."""
        return {"A": self.a, "B": self.b}[name]


@dataclass(frozen=True)
class ImageInfo:
    """What a checked image holds: its size, channels, sample type and value statistics."""

    height: int
    width: int
    channels: int
    dtype: str
    stats: ValueStats | None = field(default=None, compare=False)

    def describe(self) -> str:
        """E.g. '3 x uint8'."""
        return f"{self.channels} x {self.dtype}"


def resolve_unpaired_layout(root: Path, layout: str, phase: str) -> tuple[str, Path, Path]:
    """The layout and the folders of domains A and B for a phase (trainA/ trainB/; A/ B/, A/train B/train or
    train/A train/B)."""
    check_dataset_root(root)
    if layout not in UNPAIRED_LAYOUTS:
        raise ConfigError(
            f"--layout {layout}: unpaired data is in trainA/ trainB/ or A/ B/ folders; use --layout auto or folders"
        )
    splits = [f"{p}{side}/" for p in SPLITS for side in DOMAINS if (root / f"{p}{side}").is_dir()]
    if layout == "cyclegan" or (
        layout == "auto" and (is_unpaired_layout(root, phase) or (splits and not (root / "A").is_dir()))
    ):
        if not is_unpaired_layout(root, phase):
            shown = ", ".join(splits) or "none"
            raise DataError(
                f"{root}: has no {phase}A/ or {phase}B/ folder (found {shown}); pass --phase, or put the domains in "
                f"{phase}A/ and {phase}B/"
            )
        for side in DOMAINS:
            folder = root / f"{phase}{side}"
            if not folder.is_dir():
                problem = "is a file, not a folder" if folder.exists() else "folder missing"
                raise DataError(f"{folder}: {problem}; add domain {side}'s {phase} images in a folder there")
        return "cyclegan", root / f"{phase}A", root / f"{phase}B"
    _, base = resolve_layout(root, "folders", phase)
    return "folders", *folder_sides(base, phase)


def domain_files(folder: Path, side: str) -> list[Path]:
    """The images of one domain's folder (recursively, hidden files ignored); none is an error."""
    files = list_images(folder)
    if not files:
        raise DataError(
            f"{folder}: holds no images (looked for {' '.join(IMAGE_EXTENSIONS)}); add domain {side}'s images there"
        )
    return files


def find_unpaired_files(root: Path, phase: str = "train", layout: str = "auto") -> tuple[list[Path], list[Path]]:
    """The image files of domains A and B (names and counts may differ)."""
    _, a_dir, b_dir = resolve_unpaired_layout(root, layout, phase)
    return domain_files(a_dir, "A"), domain_files(b_dir, "B")


def domain_items(folder: Path, files: list[Path], nifti_axis: int = 2, bad: list[str] | None = None) -> list[Pair]:
    """One item per image of a domain, as a single-file Pair (a_path == b_path) named by its relative path; NIfTI
    volumes become one item per slice along `nifti_axis` (unreadable volumes are listed in `bad` when given)."""
    items = [Pair(strip_image_suffix(p.relative_to(folder)).as_posix(), p, p) for p in files]
    return expand_volumes(items, "aligned", nifti_axis, bad)


def read_item(item: Pair) -> np.ndarray:
    """The HxWxC array of one domain item (a file, or a slice of a volume)."""
    return read_image(item.a_path, volume_slice=item.volume_slice)


def _inspect_image(item: Pair, sample_size: int, seed: int) -> ImageInfo:
    arr = read_item(item)
    return ImageInfo(arr.shape[0], arr.shape[1], arr.shape[2], str(arr.dtype), value_stats(arr, sample_size, seed))


def check_domain(
    side: str, items: list[Pair], transform: JointTransform, skip_bad: bool, sample_size: int = 0, workers: int = 4
) -> tuple[list[Pair], list[ImageInfo], list[str]]:
    """Decode every image of a domain once (in threads) and check it: readable, finite, large enough for the crop,
    one channel count and sample type; return the good items, their infos and skipped-file messages."""
    seed = DOMAINS.index(side) << 32  # each domain samples its percentile values from its own stream
    numbered = list(enumerate(items))
    results = run_all(numbered, lambda n: _inspect_image(n[1], sample_size, seed + n[0]), workers)
    return keep_consistent(items, results, transform, skip_bad, Pair.where, f"earlier images of domain {side}")


class UnpairedDataset(Dataset):
    """Yields {"A", "B", "A_name", "B_name"} with A and B tensors in [-1, 1] drawn from unrelated images; keys may be
    an index or (index, epoch_seed). Length: the larger domain's count, so an epoch covers it."""

    def __init__(
        self,
        items_a: list[Pair],
        items_b: list[Pair],
        transform: JointTransform,
        summary: UnpairedSummary,
        serial_batches: bool = False,
    ) -> None:
        self.items_a = items_a
        self.items_b = items_b
        self.transform = transform
        self.summary = summary
        self.serial_batches = serial_batches

    def __len__(self) -> int:
        return max(len(self.items_a), len(self.items_b))

    def b_index(self, index: int, seed: int) -> int:
        """Which B image key (index, seed) gets: index % len(B) with serial_batches, else a draw seeded by the key."""
        return self._pick_b(index, self._streams(index, seed)[1])

    def _pick_b(self, index: int, rng: np.random.Generator) -> int:
        return index % len(self.items_b) if self.serial_batches else int(rng.integers(len(self.items_b)))

    @staticmethod
    def _streams(index: int, seed: int) -> list[np.random.Generator]:
        """Independent generators for A's augmentation, B's choice and B's augmentation, fixed by the key alone."""
        return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(3)]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, object]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        a_rng, pick_rng, b_rng = self._streams(index, seed)
        a_item = self.items_a[index % len(self.items_a)]
        b_item = self.items_b[self._pick_b(index, pick_rng)]
        # Each domain gets its own crop position and flip: the images are unrelated.
        a = self.transform([to_tensor(read_item(a_item), self.summary.a.value_range)], a_rng)[0]
        b = self.transform([to_tensor(read_item(b_item), self.summary.b.value_range)], b_rng)[0]
        return {"A": a, "B": b, "A_name": a_item.name, "B_name": b_item.name}


def open_unpaired_dataset(
    cfg: DataConfig,
    transform: JointTransform | None = None,
    *,
    serial_batches: bool = False,
    stored_ranges: Mapping[str, ValueRange | None] | None = None,
) -> UnpairedDataset:
    """Find, check and open the unpaired dataset a DataConfig describes (--max-items applies to each domain).

    serial_batches: pair A's i-th image with B's (i mod len(B))-th, as the reference's --serial_batches, instead of a
    seeded random draw. stored_ranges: value ranges per domain ("A", "B") kept by a run being resumed, used instead
    of the data's statistics."""
    if not cfg.root:
        raise DataError("no dataset given; pass the dataset folder (--data DIR)")
    if cfg.label_nc or cfg.instance_dir:
        raise ConfigError("--label-nc and --instance-dir are for paired data; unpaired domains are images")
    if transform is None:
        transform = JointTransform(cfg.preprocess, cfg.load_size, cfg.crop_size, cfg.flip)
    layout, *folders = resolve_unpaired_layout(Path(cfg.root), cfg.layout, cfg.phase)
    opened = [_open_domain(cfg, side, folder, transform) for side, folder in zip(DOMAINS, folders, strict=True)]
    bad = [msg for _, _, skipped in opened for msg in skipped]
    if bad:
        print(f"diptych: skipped {len(bad)} bad image(s):", file=sys.stderr)
        for msg in bad:
            print(f"  {msg}", file=sys.stderr)
    sides = [
        (min(transform.output_size(info.height, info.width)), item.where())
        for items, infos, _ in opened
        for item, info in zip(items, infos, strict=True)
    ]
    min_side, min_side_file = min(sides)
    domains = [
        _describe_domain(cfg, side, folder, items, infos, stored_ranges)
        for side, folder, (items, infos, _) in zip(DOMAINS, folders, opened, strict=True)
    ]
    summary = UnpairedSummary(layout, Path(cfg.root), *domains, min_side, min_side_file, tuple(bad))
    return UnpairedDataset(opened[0][0], opened[1][0], transform, summary, serial_batches)


def _open_domain(
    cfg: DataConfig, side: str, folder: Path, transform: JointTransform
) -> tuple[list[Pair], list[ImageInfo], list[str]]:
    """List and check one domain's images: the good items, their infos and the skipped-file messages."""
    bad: list[str] = []
    items = domain_items(folder, domain_files(folder, side), cfg.nifti_axis, bad if cfg.skip_bad else None)
    items = items[: cfg.max_items] if cfg.max_items else items
    sample_size = samples_per_image(cfg.normalize, len(items))
    good, infos, skipped = check_domain(side, items, transform, cfg.skip_bad, sample_size)
    if not good:
        raise DataError(f"{folder}: no usable images left after skipping {len(bad) + len(skipped)} bad one(s)")
    check_batchable(cfg, transform, [(i.height, i.width) for i in infos], folder)
    return good, infos, bad + skipped


def _describe_domain(
    cfg: DataConfig,
    side: str,
    folder: Path,
    items: list[Pair],
    infos: list[ImageInfo],
    stored_ranges: Mapping[str, ValueRange | None] | None,
) -> Domain:
    """The Domain of checked images: their format, and the stored value range or one from their statistics."""
    ref = infos[0]
    if stored_ranges is not None and side in stored_ranges:
        value_range = stored_ranges[side]
    else:
        stats = [i.stats for i in infos if i.stats]
        value_range = data_range(cfg, side, items[0].a_path, ref.dtype, stats, f"{folder} (domain {side})")
    return Domain(ref.channels, ref.dtype, value_range, len(items), str(folder))
