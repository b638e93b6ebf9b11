"""Paired datasets: aligned A|B images or A/ and B/ folders, checked before training starts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..config import DataConfig
from ..errors import DataError
from .checks import check_all
from .dicom import DICOM_EXTENSIONS
from .io import IMAGE_EXTENSIONS, ValueRange, image_suffix, list_images, read_image, strip_image_suffix, to_tensor
from .labels import check_label_range, instance_boundaries, one_hot_labels
from .nifti import is_nifti, nifti_shape
from .normalize import ValueStats, describe_range, resolve_range, samples_per_image, value_stats
from .transforms import JointTransform


@dataclass(frozen=True)
class Pair:
    """One training pair: a name and the file(s) holding A and B (the same file for aligned images);
    for NIfTI volumes, the (axis, index) of the slice both sides are cut at."""

    name: str
    a_path: Path
    b_path: Path
    volume_slice: tuple[int, int] | None = None

    def where(self, path: Path | None = None) -> str:
        """A file of the pair for messages (A's by default), with the slice's name for a slice of a NIfTI volume."""
        path = self.a_path if path is None else path
        return str(path) if self.volume_slice is None else f"{path} ({self.name})"


def read_pair_arrays(pair: Pair, layout: str, labels_on: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The A and B arrays of a pair (halves of an aligned image; one slice of volumes); labels_on names the side
    ("A" or "B") that holds palette label maps."""
    a = read_image(pair.a_path, palette_indices=labels_on == "A", volume_slice=pair.volume_slice)
    if layout == "aligned":
        half = a.shape[1] // 2
        return a[:, :half], a[:, half : 2 * half]
    return a, read_image(pair.b_path, palette_indices=labels_on == "B", volume_slice=pair.volume_slice)


def file_stem(name: str) -> str:
    """A flat file-name stem for a pair name (which may contain folders): sub/img -> sub__img."""
    return name.replace("/", "__")


@dataclass(frozen=True)
class LabelSpec:
    """The input side holds integer label maps: label_nc classes, an optional ignore id and instance maps."""

    label_nc: int
    ignore_label: int | None = None
    instance_dir: Path | None = None

    @property
    def channels(self) -> int:
        """Input channels the generator sees: one per class, plus the instance boundary map."""
        return self.label_nc + (1 if self.instance_dir else 0)

    def instance_path(self, pair: Pair) -> Path:
        """The instance map of a pair: the same name in the instance folder (any image extension)."""
        assert self.instance_dir is not None
        stem = Path(pair.name)
        for ext in (".png", ".tif", ".tiff", *IMAGE_EXTENSIONS):
            candidate = self.instance_dir / stem.with_suffix(ext)
            if candidate.is_file():
                return candidate
        raise DataError(f"{self.instance_dir}: no instance map named {stem}.*; every label map needs one")

    def encode(self, labels: np.ndarray, instances: np.ndarray | None, name: str) -> torch.Tensor:
        """One-hot label channels (+ instance boundaries) for the generator."""
        onehot = one_hot_labels(np.rint(labels).astype(np.int64), self.label_nc, self.ignore_label, name)
        if instances is None:
            return onehot
        return torch.cat([onehot, instance_boundaries(np.rint(instances).astype(np.int64), name)])


def label_spec(cfg: DataConfig) -> LabelSpec | None:
    """The label-map settings of a data config (without instance maps), or None for image inputs."""
    if not cfg.label_nc:
        return None
    return LabelSpec(cfg.label_nc, None if cfg.ignore_label < 0 else cfg.ignore_label)


@dataclass(frozen=True)
class PairInfo:
    """What a checked pair holds: its size (of one side) and the channels and sample type of A and B."""

    height: int
    width: int
    a_channels: int
    b_channels: int
    a_dtype: str
    b_dtype: str
    a_stats: ValueStats | None = field(default=None, compare=False)
    b_stats: ValueStats | None = field(default=None, compare=False)

    def describe(self) -> str:
        """E.g. '1+3 channels of uint8+uint16'."""
        return f"{self.a_channels}+{self.b_channels} channels of {self.a_dtype}+{self.b_dtype}"


@dataclass(frozen=True)
class DatasetSummary:
    """Facts about a checked dataset that configure the networks."""

    layout: str
    root: Path
    in_channels: int
    out_channels: int
    dtype: str  # sample type of the output side, which outputs are written in
    min_side: int = 0
    min_side_file: str = ""  # the pair holding the smallest side (named when it is too small)
    skipped: tuple[str, ...] = ()
    in_range: ValueRange | None = None  # input values mapped to [-1, 1]; None = the sample type's range
    out_range: ValueRange | None = None
    in_dtype: str = ""

    def describe_ranges(self) -> str:
        """E.g. 'input [-1024, 3071], output uint16 range'."""
        return (
            f"input {describe_range(self.in_range, self.in_dtype or self.dtype)}, "
            f"output {describe_range(self.out_range, self.dtype)}"
        )


def resolve_layout(root: Path, layout: str, phase: str) -> tuple[str, Path]:
    """Find the layout and the folder holding the pairs (accepts root/phase, root/A/phase and root/A)."""
    check_dataset_root(root)
    if layout == "auto" and is_unpaired_layout(root, phase):
        raise DataError(
            f"{root}: holds {phase}A/ and {phase}B/ folders, an unpaired dataset; use an unpaired method on it "
            "(`data check --unpaired` checks it), or put pairs in A/ and B/ folders with matching names"
        )
    splits = [d for d in ("train", "val", "test") if (root / d).is_dir() or (root / "A" / d).is_dir()]
    if splits and not ((root / phase).is_dir() or (root / "A" / phase).is_dir()):
        raise DataError(
            f"{root}: has no {phase}/ split (found {', '.join(s + '/' for s in splits)}); pass --phase or the split folder"
        )
    candidates = [root / phase, root] if (root / phase).is_dir() else [root]
    for base in candidates:
        has_a, has_b = (base / "A").is_dir(), (base / "B").is_dir()
        if layout == "folders" or (layout == "auto" and has_a and has_b):
            if not (has_a and has_b):
                continue
            return "folders", base
        if layout == "auto" and has_a != has_b:
            # One side's folder alone is a folders dataset missing its other half, not A|B images to split.
            missing, present = ("B", "A") if has_a else ("A", "B")
            raise DataError(
                f"{base}: has {present}/ but no {missing}/ folder; add {base / missing} with the partner images "
                "(A|B images side by side: pass --layout aligned)"
            )
        if layout in ("aligned", "auto"):
            return "aligned", base
    lacking = [f"{root / side}/" for side in ("A", "B") if not (root / side).is_dir()]
    raise DataError(f"{root}: expected A/ and B/ sub-folders for --layout folders; missing {' and '.join(lacking)}")


def is_unpaired_layout(root: Path, phase: str = "train") -> bool:
    """Whether a folder has CycleGAN's unpaired layout for this phase (trainA/ or trainB/). A/ and B/ folders are not
    recognised here: they are paired data unless the method reads unpaired data, which only the method knows."""
    return (root / f"{phase}A").is_dir() or (root / f"{phase}B").is_dir()


def check_dataset_root(root: Path) -> None:
    """Refuse a dataset path that is missing or not a folder."""
    if not root.exists():
        raise DataError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass the dataset folder")


def folder_sides(base: Path, phase: str) -> tuple[Path, Path]:
    """The A and B folders of a folders-layout dataset: base/A/phase and base/B/phase when both exist, else base/A
    and base/B."""
    a_dir, b_dir = base / "A", base / "B"
    if (a_dir / phase).is_dir() and (b_dir / phase).is_dir():
        return a_dir / phase, b_dir / phase
    return a_dir, b_dir


def find_pairs(
    root: Path, layout: str, phase: str = "train", unmatched: list[str] | None = None, nifti_axis: int = 2
) -> tuple[str, Path, list[Pair]]:
    """List the pairs of a dataset folder; unmatched names raise DataError, or are listed in `unmatched` if given.

    NIfTI volumes become one pair per slice along `nifti_axis` (slice i of A with slice i of B)."""
    layout, base, pairs = _find_file_pairs(root, layout, phase, unmatched)
    return layout, base, expand_volumes(pairs, layout, nifti_axis, unmatched)


def _find_file_pairs(root: Path, layout: str, phase: str, unmatched: list[str] | None) -> tuple[str, Path, list[Pair]]:
    layout, base = resolve_layout(root, layout, phase)
    exts = " ".join(IMAGE_EXTENSIONS)
    if layout == "aligned":
        files = files_by_stem(base)
        if not files:
            raise DataError(f"{base}: no images found (looked for {exts}); is this the dataset folder?")
        return layout, base, [Pair(name, p, p) for name, p in sorted(files.items())]
    return layout, base, match_folders(*folder_sides(base, phase), unmatched)


def match_folders(a_dir: Path, b_dir: Path, unmatched: list[str] | None = None) -> list[Pair]:
    """Pairs of the images with the same relative name in two folders; names on one side only raise DataError, or
    are listed in `unmatched` if given."""
    a_files, b_files = files_by_stem(a_dir), files_by_stem(b_dir)
    if not a_files and not b_files:
        raise DataError(f"{a_dir} and {b_dir}: no images found (looked for {' '.join(IMAGE_EXTENSIONS)})")
    only_a = sorted(set(a_files) - set(b_files))
    only_b = sorted(set(b_files) - set(a_files))
    if (only_a or only_b) and unmatched is not None:
        unmatched += [f"{a_files[n]}: no partner in {b_dir}" for n in only_a]
        unmatched += [f"{b_files[n]}: no partner in {a_dir}" for n in only_b]
    elif only_a or only_b:
        side, names, other = (a_dir, only_a, b_dir) if only_a else (b_dir, only_b, a_dir)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise DataError(f"{side}: {len(names)} image(s) have no partner of the same name in {other}: {shown}")
    return [Pair(name, a_files[name], b_files[name]) for name in sorted(a_files) if name in b_files]


def expand_volumes(pairs: list[Pair], layout: str, axis: int, unmatched: list[str] | None) -> list[Pair]:
    """Replace every pair of NIfTI volumes by its slice pairs; volumes of different shapes are an error (an unpaired
    domain's files are single-file pairs, expanded with layout "aligned")."""
    out: list[Pair] = []
    for pair in pairs:
        paths = [pair.a_path] if layout == "aligned" else [pair.a_path, pair.b_path]
        if not any(is_nifti(p) for p in paths):
            out.append(pair)
            continue
        try:
            spatial = [nifti_shape(p)[0] if is_nifti(p) else None for p in paths]
            if len(set(spatial)) > 1:
                shown = " and ".join(
                    f"{p} ({'x'.join(map(str, s)) if s else 'not NIfTI'})" for p, s in zip(paths, spatial, strict=True)
                )
                raise DataError(f"{shown}: volumes of a pair must have the same shape; resample one onto the other")
        except DataError as exc:
            if unmatched is None:
                raise
            unmatched.append(str(exc))
            continue
        shape = spatial[0]
        assert shape is not None
        if len(shape) == 2:
            out.append(pair)
            continue
        out += [Pair(f"{pair.name}/slice_{i:04d}", pair.a_path, pair.b_path, (axis, i)) for i in range(shape[axis])]
    return out


def files_by_stem(folder: Path) -> dict[str, Path]:
    """Images keyed by relative path without extension; two files with one name (x.png, x.jpg) are an error."""
    out: dict[str, Path] = {}
    for p in list_images(folder):
        key = strip_image_suffix(p.relative_to(folder)).as_posix()
        if key in out:
            raise DataError(f"{p}: has the same name as {out[key]}; keep one file per name so pairs are unambiguous")
        out[key] = p
    return out


def _inspect_pair(pair: Pair, layout: str, labels_on: str = "", sample_size: int = 0, seed: int = 0) -> PairInfo:
    a = read_image(pair.a_path, palette_indices=labels_on == "A", volume_slice=pair.volume_slice)
    if layout == "aligned":
        if a.shape[1] % 2:
            raise DataError(
                f"{pair.a_path}: aligned A|B image has odd width {a.shape[1]}; it must be two equal halves side by side"
            )
        half = a.shape[1] // 2
        a, b = a[:, :half], a[:, half:]
    else:
        b = read_image(pair.b_path, palette_indices=labels_on == "B", volume_slice=pair.volume_slice)
    if a.shape[:2] != b.shape[:2]:
        raise DataError(
            f"{pair.b_path}: size {b.shape[1]}x{b.shape[0]} differs from its partner {pair.a_path} "
            f"({a.shape[1]}x{a.shape[0]}); A and B of a pair must have the same size"
        )
    # A and B may differ in sample type (8-bit photo -> 16-bit depth): each is scaled by its own range.
    stats = [value_stats(x, sample_size, seed * 2 + i) for i, x in enumerate((a, b))]
    return PairInfo(a.shape[0], a.shape[1], a.shape[2], b.shape[2], str(a.dtype), str(b.dtype), *stats)


def check_pairs(
    pairs: list[Pair],
    layout: str,
    transform: JointTransform,
    skip_bad: bool,
    workers: int = 4,
    labels_on: str = "",
    sample_size: int = 0,
) -> tuple[list[Pair], list[PairInfo], list[str]]:
    """Decode every pair once (in threads) and check it; return good pairs, their infos (with value statistics,
    `sample_size` values per image for percentiles) and skipped-file messages."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_inspect_pair, p, layout, labels_on, sample_size, i) for i, p in enumerate(pairs)]
        results: list[PairInfo | DataError] = []
        for fut in tqdm(futures, desc="checking pairs", unit="pair", leave=False, disable=len(pairs) < 200):
            try:
                results.append(fut.result())
            except DataError as exc:
                results.append(exc)
    return keep_consistent(pairs, results, transform, skip_bad, lambda pair: str(pair.a_path), "earlier pairs")


class SizeCheck(Protocol):
    """What keep_consistent needs of a crop or transform: refuse an image too small for it (JointTransform, SRCrop)."""

    def check(self, height: int, width: int, name: str) -> None: ...


def keep_consistent(
    items: list[Any],
    results: list[Any],
    transform: SizeCheck,
    skip_bad: bool,
    where: Callable[[Any], str],
    earlier: str,
) -> tuple[list[Any], list[Any], list[str]]:
    """Sort inspected files into good ones (decoded, large enough for the transform, of the first good one's format)
    and skipped-file messages (a DataError instead unless skip_bad); `where` names an item, `earlier` the group."""
    good, infos, bad = [], [], []
    reference = None
    for item, res in zip(items, results, strict=True):
        try:
            if isinstance(res, DataError):
                raise res
            transform.check(res.height, res.width, where(item))
            if reference is None:
                reference = res
            elif res.describe() != reference.describe():
                raise DataError(
                    f"{where(item)}: has {res.describe()}, but {earlier} have {reference.describe()}; "
                    "convert them to one format"
                )
        except DataError as exc:
            if not skip_bad:
                raise
            bad.append(str(exc))
            continue
        good.append(item)
        infos.append(res)
    return good, infos, bad


class PairedDataset(Dataset):
    """Yields {"A", "B", "name"} tensors in [-1, 1]; keys may be an index or (index, seed) for reproducible augmentation."""

    def __init__(
        self,
        pairs: list[Pair],
        layout: str,
        direction: str,
        transform: JointTransform,
        summary: DatasetSummary,
        labels: LabelSpec | None = None,
    ) -> None:
        self.pairs = pairs
        self.layout = layout
        self.direction = direction
        self.transform = transform
        self.summary = summary
        self.labels = labels

    def __len__(self) -> int:
        return len(self.pairs)

    def with_pairs(self, pairs: list[Pair]) -> PairedDataset:
        """The same dataset (layout, direction, transform, summary, label settings) over other pairs."""
        return PairedDataset(pairs, self.layout, self.direction, self.transform, self.summary, self.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, object]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        pair = self.pairs[index]
        labels_on = "" if self.labels is None else ("A" if self.direction == "AtoB" else "B")
        a_arr, b_arr = read_pair_arrays(pair, self.layout, labels_on)
        if self.direction == "BtoA":
            a_arr, b_arr = b_arr, a_arr
        rng = np.random.default_rng([seed, index])
        b_tensor = to_tensor(b_arr, self.summary.out_range)
        if self.labels is None:
            a, b = self.transform([to_tensor(a_arr, self.summary.in_range), b_tensor], rng)
            return {"A": a, "B": b, "name": pair.name}
        # Label (and instance) maps: checked whole, resized by nearest neighbour, one-hot encoded after the crop.
        check_label_range(a_arr[:, :, 0], self.labels.label_nc, self.labels.ignore_label, str(pair.a_path))
        maps = [torch.from_numpy(a_arr[:, :, :1].astype(np.float32)).permute(2, 0, 1)]
        if self.labels.instance_dir:
            inst = read_image(self.labels.instance_path(pair))
            if inst.shape[:2] != a_arr.shape[:2]:
                instance_boundaries(inst, str(self.labels.instance_path(pair)), a_arr.shape[:2])  # raises
            maps.append(torch.from_numpy(inst[:, :, :1].astype(np.float32)).permute(2, 0, 1))
        out = self.transform([maps[0], b_tensor, *maps[1:]], rng, nearest=(True, False, True))
        a = self.labels.encode(out[0][0].numpy(), out[2][0].numpy() if len(out) > 2 else None, str(pair.a_path))
        return {"A": a, "B": out[1], "name": pair.name}


def check_label_files(pairs: list[Pair], layout: str, direction: str, labels: LabelSpec, skip_bad: bool) -> list[Pair]:
    """Check every label map's range and instance map before training (not hours in); return the good pairs."""

    def check(pair: Pair) -> None:
        if layout == "aligned" or direction == "AtoB":
            a, b = read_pair_arrays(pair, layout, "A" if direction == "AtoB" else "B")
            arr = a if direction == "AtoB" else b
        else:
            arr = read_image(pair.b_path, palette_indices=True, volume_slice=pair.volume_slice)
        check_label_range(arr[:, :, 0], labels.label_nc, labels.ignore_label, str(pair.a_path))
        if labels.instance_dir:
            inst = read_image(labels.instance_path(pair))
            if inst.shape[:2] != arr.shape[:2]:
                instance_boundaries(inst, str(labels.instance_path(pair)), arr.shape[:2])

    good, errors = check_all(pairs, check, skip_bad, workers=4)
    for msg in errors:
        print(f"diptych: skipped: {msg}", file=sys.stderr)
    return good


def open_paired_dataset(cfg: DataConfig, transform: JointTransform | None = None) -> PairedDataset:
    """Find, check and open the paired dataset a DataConfig describes."""
    if not cfg.root:
        raise DataError("no dataset given; pass the dataset folder (--data DIR)")
    if transform is None:
        transform = JointTransform(cfg.preprocess, cfg.load_size, cfg.crop_size, cfg.flip)
    unmatched: list[str] | None = [] if cfg.skip_bad else None
    layout, base, pairs = find_pairs(Path(cfg.root), cfg.layout, cfg.phase, unmatched, cfg.nifti_axis)
    if cfg.max_items:
        pairs = pairs[: cfg.max_items]
    labels_on = "" if not cfg.label_nc else ("A" if cfg.direction == "AtoB" else "B")
    sample_size = samples_per_image(cfg.normalize, len(pairs))
    good, infos, bad = check_pairs(pairs, layout, transform, cfg.skip_bad, labels_on=labels_on, sample_size=sample_size)
    bad = (unmatched or []) + bad
    if bad:
        print(f"diptych: skipped {len(bad)} bad pair(s):", file=sys.stderr)
        for msg in bad:
            print(f"  {msg}", file=sys.stderr)
    if not good:
        raise DataError(f"{base}: no usable pairs left after skipping {len(bad)} bad one(s)")
    check_batchable(cfg, transform, [(i.height, i.width) for i in infos], base)
    ref = infos[0]
    a_nc, b_nc = (ref.a_channels, ref.b_channels) if cfg.direction == "AtoB" else (ref.b_channels, ref.a_channels)
    min_side, smallest = min((min(transform.output_size(i.height, i.width)), k) for k, i in enumerate(infos))
    min_side_file = good[smallest].where()
    out_dtype = ref.b_dtype if cfg.direction == "AtoB" else ref.a_dtype
    labels = None
    if cfg.label_nc:
        if a_nc != 1:
            raise DataError(
                f"{base}: --label-nc needs single-channel label maps on the input side, found {a_nc} channels"
            )
        instance_dir = Path(cfg.instance_dir) if cfg.instance_dir else None
        if instance_dir is not None and not instance_dir.is_dir():
            raise DataError(f"{instance_dir}: --instance-dir is not a folder")
        labels = LabelSpec(cfg.label_nc, None if cfg.ignore_label < 0 else cfg.ignore_label, instance_dir)
        a_nc = labels.channels
        good = check_label_files(good, layout, cfg.direction, labels, cfg.skip_bad)
    in_side, out_side = ("A", "B") if cfg.direction == "AtoB" else ("B", "A")
    in_range = None if labels else side_range(cfg, in_side, good, infos, base)
    out_range = side_range(cfg, out_side, good, infos, base)
    in_dtype = ref.a_dtype if cfg.direction == "AtoB" else ref.b_dtype
    summary = DatasetSummary(
        layout, base, a_nc, b_nc, out_dtype, min_side, min_side_file, tuple(bad), in_range, out_range, in_dtype
    )
    return PairedDataset(good, layout, cfg.direction, transform, summary, labels)


def side_range(cfg: DataConfig, side: str, pairs: list[Pair], infos: list[PairInfo], base: Path) -> ValueRange | None:
    """The value range of side A or B: the one stored in the config (a resumed run), else from the data's statistics."""
    stored = cfg.input_range if (side == "A") == (cfg.direction == "AtoB") else cfg.output_range
    if stored:
        return stored[0], stored[1]
    path = pairs[0].a_path if side == "A" else pairs[0].b_path
    stats = [i.a_stats if side == "A" else i.b_stats for i in infos]
    dtype = infos[0].a_dtype if side == "A" else infos[0].b_dtype
    return data_range(cfg, side, path, dtype, [s for s in stats if s], f"{base} (side {side})")


def data_range(
    cfg: DataConfig, side: str, path: Path, dtype: str, stats: list[ValueStats], where: str
) -> ValueRange | None:
    """The value range of one side's images from their statistics, as --normalize (or the side's DICOM window) says;
    `path` is one of its files (a DICOM file makes the window apply)."""
    window = cfg.window(side) if image_suffix(path) in DICOM_EXTENSIONS else None
    percentiles = (cfg.percentile_low, cfg.percentile_high)
    return resolve_range(cfg.normalize, dtype, stats, percentiles, window, where)


def check_batchable(cfg: DataConfig, transform: JointTransform, sizes: list[tuple[int, int]], base: Path) -> None:
    """Refuse images of different (H, W) sizes that the transform keeps different when batches hold several."""
    if cfg.batch_size > 1 and cfg.preprocess in ("none", "scale_width"):
        out = {transform.output_size(h, w) for h, w in sizes}
        if len(out) > 1:
            raise DataError(
                f"{base}: images have {len(out)} different sizes, which cannot be batched with --preprocess "
                f"{cfg.preprocess}; use --batch-size 1 or a cropping --preprocess"
            )


def collate_pairs(batch: list[dict[str, object]]) -> dict[str, object]:
    """Stack the tensors of the items (A, B) into batches; keep every other value (names) as a list."""
    return {
        key: torch.stack(values) if isinstance(values[0], torch.Tensor) else values  # type: ignore[arg-type]
        for key, values in ((k, [item[k] for item in batch]) for k in batch[0])
    }
