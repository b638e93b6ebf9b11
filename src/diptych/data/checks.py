"""Checking many files before work starts: in threads, naming every bad one."""

from __future__ import annotations

import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..errors import DataError

T = TypeVar("T")
R = TypeVar("R")


def run_all(items: list[T], work: Callable[[T], R], workers: int = 2) -> list[R | DataError]:
    """Run `work` on every item in threads; each result is its return value or the DataError it raised, in order."""

    def run(item: T) -> R | DataError:
        try:
            return work(item)
        except DataError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(run, items))


def check_all(
    items: list[T], check: Callable[[T], object], skip_bad: bool, workers: int = 2
) -> tuple[list[T], list[str]]:
    """Run `check` on every item in threads. A DataError stops everything (naming the first bad item and how many
    more there are) unless skip_bad, in which case the bad items are dropped and their messages returned."""
    problems = [str(r) if isinstance(r, DataError) else None for r in run_all(items, check, workers)]
    errors = [p for p in problems if p]
    if errors and not skip_bad:
        raise DataError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return [item for item, problem in zip(items, problems, strict=True) if problem is None], errors


def check_regular_file(path: Path) -> None:
    """Refuse, before it is opened, what is not a regular file once links are followed: a dangling link or a link
    loop cannot be read, and a FIFO or device named like an image would block or never end."""
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        if Path(path).is_symlink():
            raise DataError(
                f"{path}: dangling symlink (its target does not exist); remove it or pass --skip-bad"
            ) from None
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:  # a link loop (ELOOP), a folder that cannot be searched
        raise DataError(f"{path}: cannot be opened ({exc.strerror or exc}); remove it or pass --skip-bad") from None
    if not stat.S_ISREG(mode):
        raise DataError(
            f"{path}: not a regular file (a FIFO, device or folder, or a link to one); remove it or pass --skip-bad"
        )
