"""Paired training sets from real photos: a degraded input A and the clean photo B, split by source photo."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...atomic import write_text_atomic
from ...errors import ConfigError, DataError
from ..checks import check_all
from ..io import convert_channels, list_images, read_image
from . import degrade
from .outputs import OutputSet

TASKS = ("edges", "gray", "downscale", "blur", "noise", "jpeg")
SPLITS = ("train", "val", "test")
MANIFEST = "make_pairs.json"


@dataclass(frozen=True)
class TaskOptions:
    """Which degradation makes A, and its parameters."""

    task: str
    canny_sigma: float = 2.0
    lab: bool = False
    scale: int = 4
    blur_sigma: float = 2.0
    noise_sigma: float = 0.05
    quality: int = 20
    hed_weights: str = ""  # edges: soft HED edges from this local weights file instead of Canny

    def validate(self) -> None:
        """Reject impossible values, naming the option."""
        if self.task not in TASKS:
            raise ConfigError(f"--task {self.task}: choose one of {', '.join(TASKS)}")
        checks = (
            (self.canny_sigma > 0, f"--canny-sigma {self.canny_sigma} must be > 0"),
            (self.scale >= 2, f"--scale {self.scale} must be >= 2"),
            (self.blur_sigma > 0, f"--blur-sigma {self.blur_sigma} must be > 0"),
            (
                0 < self.noise_sigma <= 1,
                f"--noise-sigma {self.noise_sigma} must be in (0, 1] (a fraction of the range)",
            ),
            (1 <= self.quality <= 95, f"--quality {self.quality} must be in 1..95"),
            (not self.lab or self.task == "gray", "--lab only applies to --task gray"),
            (not self.hed_weights or self.task == "edges", "--hed-weights only applies to --task edges"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def degrade(self, photo: np.ndarray, rng: np.random.Generator, hed: degrade.HEDEdges | None = None) -> np.ndarray:
        """The input image A for one clean photo."""
        if self.task == "edges":
            return hed(photo) if hed is not None else degrade.canny_edges(photo, self.canny_sigma)
        if self.task == "gray":
            return degrade.lab_lightness(photo) if self.lab else degrade.luminance(photo)
        if self.task == "downscale":
            return degrade.downscale(photo, self.scale)
        if self.task == "blur":
            return degrade.blur(photo, self.blur_sigma)
        if self.task == "noise":
            return degrade.add_noise(photo, self.noise_sigma, rng)
        return degrade.jpeg_compress(photo, self.quality)


@dataclass(frozen=True)
class CropOptions:
    """Whole images (size 0), or `per_image` random crops, or grid tiles (all of them when per_image is 0)."""

    size: int = 0
    per_image: int = 1
    grid: bool = False

    def validate(self) -> None:
        """Reject impossible values, naming the option."""
        if self.size < 0:
            raise ConfigError(f"--crop {self.size} must be >= 0 (0 = whole images)")
        if self.per_image < 0 or (self.per_image == 0 and not self.grid):
            raise ConfigError(f"--crops-per-image {self.per_image} must be >= 1 (or 0 = all tiles with --grid)")
        if self.grid and not self.size:
            raise ConfigError("--grid needs --crop SIZE")

    def boxes(self, height: int, width: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of every crop of one photo; empty when the photo is smaller than the crop."""
        if not self.size:
            return [(0, 0, height, width)]
        s = self.size
        if height < s or width < s:
            return []
        if self.grid:
            tiles = [(y, x, s, s) for y in range(0, height - s + 1, s) for x in range(0, width - s + 1, s)]
            if self.per_image and self.per_image < len(tiles):
                keep = sorted(rng.choice(len(tiles), self.per_image, replace=False))
                tiles = [tiles[i] for i in keep]
            return tiles
        return [
            (int(rng.integers(0, height - s + 1)), int(rng.integers(0, width - s + 1)), s, s)
            for _ in range(self.per_image)
        ]


def parse_split(text: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' -> train, val and test fractions (two numbers mean no test split); they must sum to 1."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise ConfigError(f"--split {text}: expected fractions like 0.8,0.1,0.1 (train,val,test)") from None
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or not all(0 <= p <= 1 for p in parts) or abs(sum(parts) - 1.0) > 1e-6 or parts[0] == 0:
        raise ConfigError(f"--split {text}: expected three fractions >= 0 (train > 0) that sum to 1, e.g. 0.8,0.1,0.1")
    return parts[0], parts[1], parts[2]


def assign_splits(count: int, fractions: tuple[float, float, float], seed: int) -> list[str]:
    """The split of each of `count` sources: shuffled with the seed, sized by largest remainder, and every split with
    a non-zero fraction gets at least one source when there are enough."""
    wanted = np.array(fractions) * count
    sizes = np.floor(wanted).astype(int)
    for i in np.argsort(-(wanted - sizes), kind="stable")[: count - sizes.sum()]:
        sizes[i] += 1
    for i in (1, 2):
        if fractions[i] > 0 and sizes[i] == 0 and sizes[0] > 1:
            sizes[0] -= 1
            sizes[i] += 1
    labels = [split for split, n in zip(SPLITS, sizes, strict=True) for _ in range(n)]
    order = np.random.default_rng(seed).permutation(count)
    out = [""] * count
    for label, index in zip(labels, order, strict=True):
        out[index] = label
    return out


@dataclass
class MakePairsResult:
    """What was written: crops per split, sources per split, and photos too small for the crop."""

    out: Path
    pairs: dict[str, int] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    too_small: list[str] = field(default_factory=list)
    removed: int = 0  # files of an earlier run in OUT/{train,val,test} deleted by --overwrite


def list_sources(photos: Path) -> list[Path]:
    """The photos to build from: one image file, or every image under a folder."""
    if photos.is_file():
        return [photos]
    if not photos.is_dir():
        raise DataError(f"{photos}: no such file or folder of photos")
    files = list_images(photos)
    if not files:
        raise DataError(f"{photos}: no images found")
    return files


def make_pairs(
    photos: Path,
    out: Path,
    task: TaskOptions,
    crops: CropOptions = CropOptions(),
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    aligned: bool = False,
    suffix: str = ".png",
    workers: int = 4,
    overwrite: bool = False,
    device: str = "auto",
) -> MakePairsResult:
    """Write OUT/{train,val,test}/{A,B}/ (or aligned A|B images) and OUT/make_pairs.json; all or nothing."""
    task.validate()
    crops.validate()
    hed = degrade.HEDEdges(Path(task.hed_weights), device) if task.hed_weights else None
    sources = list_sources(photos)
    base = photos if photos.is_dir() else photos.parent
    names = [s.relative_to(base).with_suffix("").as_posix() for s in sources]
    splits = assign_splits(len(sources), split, seed)
    result = MakePairsResult(out, {s: 0 for s in SPLITS}, {s: [] for s in SPLITS})

    with OutputSet(out, suffix, overwrite) as outputs:
        write = _writer(outputs, aligned)

        def build(index: int) -> int:
            path = sources[index]
            try:
                photo = _clean(read_image(path))
                rng = np.random.default_rng([seed, index])
                a_full = task.degrade(photo, rng, hed)
            except DataError as exc:
                raise DataError(exc if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
            formats[index] = f"{photo.shape[2]} x {photo.dtype}"
            boxes = crops.boxes(photo.shape[0], photo.shape[1], rng)
            stem = names[index].replace("/", "__")
            for k, (y, x, h, w) in enumerate(boxes):
                name = stem if not crops.size else f"{stem}_{k:03d}"
                write(splits[index], name, a_full[y : y + h, x : x + w], photo[y : y + h, x : x + w])
            return len(boxes)

        counts = [0] * len(sources)
        formats = [""] * len(sources)

        def run(index: int) -> None:
            counts[index] = build(index)

        check_all(list(range(len(sources))), run, skip_bad=False, workers=workers)
        _check_one_format(sources, formats)
        for index, n in enumerate(counts):
            if n == 0:
                result.too_small.append(str(sources[index]))
                continue
            result.pairs[splits[index]] += n
            result.sources[splits[index]].append(names[index])
        if not sum(result.pairs.values()):
            raise DataError(f"{photos}: every photo is smaller than --crop {crops.size}; choose a smaller crop")
        if overwrite:
            result.removed = outputs.remove_stale([out / split for split in SPLITS], keep=[photos])
        manifest = {
            "task": asdict(task),
            "crop": asdict(crops),
            "split": list(split),
            "seed": seed,
            "layout": "aligned" if aligned else "folders",
            "pairs": result.pairs,
            "sources": result.sources,
            "too_small": result.too_small,
        }
        manifest_path = out / MANIFEST
        if manifest_path.exists() and not overwrite:
            raise DataError(f"{manifest_path}: already exists; pass --overwrite or choose another output folder")
        write_text_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return result


def _check_one_format(sources: list[Path], formats: list[str]) -> None:
    """Photos of mixed channels or sample types would make a dataset that training refuses: stop, naming them."""
    usual, _ = Counter(formats).most_common(1)[0]
    odd = [f"{path} ({fmt})" for path, fmt in zip(sources, formats, strict=True) if fmt != usual]
    if odd:
        shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
        raise DataError(
            f"{shown}: differ from the other photos ({usual}); a dataset needs one channel count and sample type: "
            "convert them (e.g. grey to RGB) or remove them"
        )


def _clean(photo: np.ndarray) -> np.ndarray:
    """Drop an alpha channel: targets are the visible photo."""
    return photo[:, :, :3] if photo.shape[2] == 4 else photo[:, :, :1] if photo.shape[2] == 2 else photo


def _writer(outputs: OutputSet, aligned: bool) -> Callable[[str, str, np.ndarray, np.ndarray], None]:
    """A function writing one (A, B) crop into its split, as two files or one A|B image."""

    def write(split: str, name: str, a: np.ndarray, b: np.ndarray) -> None:
        if aligned:
            outputs.write(Path(split) / name, np.concatenate([convert_channels(a, b.shape[2], name), b], axis=1))
        else:
            outputs.write(Path(split) / "A" / name, a)
            outputs.write(Path(split) / "B" / name, b)

    return write
