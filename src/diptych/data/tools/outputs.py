"""A set of image files written together: existing files are never replaced silently, and a failed run leaves none."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from ...errors import DataError
from ..io import list_images, output_suffix, write_image

OUTPUT_FORMATS = ("png", "tif", "jpg")


class OutputSet:
    """Writes images under a root; on an exception every file this run created is removed again."""

    def __init__(self, root: Path, suffix: str = ".png", overwrite: bool = False) -> None:
        self.root = Path(root)
        self.suffix = suffix if suffix.startswith(".") else f".{suffix}"
        self.overwrite = overwrite
        self.created: list[Path] = []
        self._claimed: set[Path] = set()
        self.written = 0
        self._root_existed = self.root.exists()
        self._lock = threading.Lock()

    def path_for(self, rel: str | Path, arr: np.ndarray) -> Path:
        """Where `write(rel, arr)` (rel: a relative name without extension) puts the file (the suffix changes to .tif where only TIFF holds the data)."""
        path = self.root / f"{Path(rel).as_posix()}{self.suffix}"  # rel has no extension; keep dots in names
        channels = arr.shape[2] if arr.ndim == 3 else 1
        if self.suffix in (".jpg", ".jpeg") and (arr.dtype != np.uint8 or channels not in (1, 3)):
            raise DataError(f"{path}: JPEG holds only 8-bit grey or RGB; pass --format png or tif")
        return path.with_suffix(output_suffix(self.suffix, arr.dtype, channels))

    def write(self, rel: str | Path, arr: np.ndarray) -> Path:
        """Write one image atomically (thread-safe); an existing file is an error unless overwrite was asked for."""
        path = self.path_for(rel, arr)
        with self._lock:
            existed = path.exists()
            if existed and not self.overwrite:
                raise DataError(
                    f"{path}: already exists; pass --overwrite to replace it or choose another output folder"
                )
            if path in self._claimed:
                raise DataError(f"{path}: two inputs map to this output name; rename one of them")
            self._claimed.add(path)
            if not existed:
                self.created.append(path)
        write_image(path, arr)
        with self._lock:
            self.written += 1
        return path

    def remove_others(self, candidates: list[Path]) -> list[Path]:
        """Delete the candidate files this run did not write (an earlier run's leftovers); returns them.

        With --overwrite, a dataset built again with other options must not keep the old run's files: a photo's
        old crops left in another split would leak it from training into val/test."""
        with self._lock:
            stale = [p for p in candidates if p not in self._claimed and p.is_file()]
        for path in stale:
            path.unlink()
        return stale

    def remove_stale(self, folders: Sequence[Path], keep: Sequence[Path] = ()) -> int:
        """With --overwrite: delete the image files under `folders` (recursively) that this run did not write, except
        those under `keep` (the run's inputs, should they lie inside); returns how many."""
        keep_resolved = [k.resolve() for k in keep]
        old = [
            p
            for folder in folders
            if folder.is_dir()
            for p in list_images(folder)
            if not any(p.resolve().is_relative_to(k) for k in keep_resolved)
        ]
        return len(self.remove_others(old))

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            return
        for path in self.created:
            if path.exists():
                path.unlink()
        for folder in sorted({p.parent for p in self.created}, key=lambda p: len(p.parts), reverse=True):
            _remove_empty_parents(folder, self.root if self._root_existed else self.root.parent)


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    """Remove `folder` and its parents up to (not including) `stop` while they are empty."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        os.rmdir(folder)
        folder = folder.parent
