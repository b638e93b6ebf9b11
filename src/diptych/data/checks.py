"""Checking many files before work starts: in threads, naming every bad one."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
