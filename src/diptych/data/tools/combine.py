"""Aligned A|B images from two folders of partners, and the inverse split into A/ and B/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.transform import resize

from ...errors import DataError
from ..checks import check_all
from ..io import convert_channels, read_image
from ..paired import files_by_stem
from .outputs import OutputSet

RESIZE_POLICIES = ("none", "b-to-a")


@dataclass(frozen=True)
class Partners:
    """Two files that belong together, named by their relative path without extension."""

    name: str
    a_path: Path
    b_path: Path


def images_by_name(folder: Path) -> dict[str, Path]:
    """Images under a folder keyed by relative path without extension; one name held by two files is an error."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    return files_by_stem(folder)  # the same naming rule as the folders layout's pairing


def match_partners(a_dir: Path, b_dir: Path) -> list[Partners]:
    """Pair the files of two folders by relative path and stem; any file without a partner is an error."""
    a_files, b_files = images_by_name(a_dir), images_by_name(b_dir)
    if not a_files:
        raise DataError(f"{a_dir}: no images found")
    for side, names, other in (
        (a_dir, set(a_files) - set(b_files), b_dir),
        (b_dir, set(b_files) - set(a_files), a_dir),
    ):
        if names:
            shown = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise DataError(f"{side}: {len(names)} image(s) have no partner of the same name in {other}: {shown}")
    return [Partners(name, a_files[name], b_files[name]) for name in sorted(a_files)]


def resize_like(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an HxWxC image (any sample type) to height x width with bicubic interpolation, keeping its type."""
    if arr.shape[:2] == (height, width):
        return arr
    out = resize(
        arr.astype(np.float64), (height, width, arr.shape[2]), order=3, preserve_range=True, anti_aliasing=True
    )
    if arr.dtype.kind == "u":
        out = np.clip(np.rint(out), 0, np.iinfo(arr.dtype).max)
    return out.astype(arr.dtype)


def side_by_side(a: np.ndarray, b: np.ndarray, name: str, resize_policy: str = "none", channels: int = 0) -> np.ndarray:
    """One A|B image; A and B must agree in size (or B is resized), channels (or both converted) and sample type."""
    if a.shape[:2] != b.shape[:2]:
        if resize_policy != "b-to-a":
            raise DataError(
                f"{name}: B is {b.shape[1]}x{b.shape[0]} but A is {a.shape[1]}x{a.shape[0]}; "
                "resize one of them or pass --resize b-to-a"
            )
        b = resize_like(b, a.shape[0], a.shape[1])
    if channels:
        a, b = convert_channels(a, channels, f"{name} (A)"), convert_channels(b, channels, f"{name} (B)")
    if a.shape[2] != b.shape[2]:
        raise DataError(
            f"{name}: A has {a.shape[2]} channel(s) and B {b.shape[2]}; an aligned image needs the same on both "
            "sides: pass --channels N, or train on the two folders directly (--layout folders)"
        )
    if a.dtype != b.dtype:
        raise DataError(
            f"{name}: A is {a.dtype} and B is {b.dtype}; an aligned image has one sample type: convert one side, "
            "or train on the two folders directly (--layout folders)"
        )
    return np.concatenate([a, b], axis=1)


def combine_folders(
    a_dir: Path,
    b_dir: Path,
    out: Path,
    suffix: str = ".png",
    resize_policy: str = "none",
    channels: int = 0,
    workers: int = 4,
    overwrite: bool = False,
) -> tuple[int, int]:
    """Write OUT/<name>.<suffix> = A|B for every pair of partners (all or nothing); returns the number written and,
    with overwrite, the number of an earlier run's images under OUT deleted because this run did not write them."""
    partners = match_partners(a_dir, b_dir)

    with OutputSet(out, suffix, overwrite) as outputs:

        def combine(p: Partners) -> None:
            pair = side_by_side(read_image(p.a_path), read_image(p.b_path), str(p.a_path), resize_policy, channels)
            outputs.write(p.name, pair)

        check_all(partners, combine, skip_bad=False, workers=workers)
        removed = outputs.remove_stale([out], keep=[a_dir, b_dir]) if overwrite else 0
    return outputs.written, removed


def split_aligned(
    aligned_dir: Path, out: Path, suffix: str = ".png", workers: int = 4, overwrite: bool = False
) -> tuple[int, int]:
    """Write OUT/A/<name> and OUT/B/<name> from every A|B image under a folder; returns the number of pairs and,
    with overwrite, the number of an earlier run's images under OUT/A and OUT/B deleted because this run did not
    write them."""
    files = images_by_name(aligned_dir)
    if not files:
        raise DataError(f"{aligned_dir}: no images found")
    # A and B folders side by side mean the dataset is already split: halving its images would write nonsense.
    for folder in (aligned_dir, *(p for p in aligned_dir.rglob("*") if p.is_dir())):
        if (folder / "A").is_dir() and (folder / "B").is_dir():
            raise DataError(
                f"{folder}: holds A/ and B/ folders, a dataset already split into partners (the folders layout); "
                "split takes a folder of A|B images"
            )

    with OutputSet(out, suffix, overwrite) as outputs:

        def split(item: tuple[str, Path]) -> None:
            name, path = item
            arr = read_image(path)
            width = arr.shape[1]
            if width % 2:
                raise DataError(f"{path}: width {width} is odd; an aligned A|B image is two equal halves side by side")
            outputs.write(Path("A") / name, arr[:, : width // 2])
            outputs.write(Path("B") / name, arr[:, width // 2 :])

        check_all(sorted(files.items()), split, skip_bad=False, workers=workers)
        removed = outputs.remove_stale([out / "A", out / "B"], keep=[aligned_dir]) if overwrite else 0
    return outputs.written // 2, removed
