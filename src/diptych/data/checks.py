"""Checking many files before work starts: in threads, naming every bad one."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..errors import DataError

T = TypeVar("T")


def check_all(
    items: list[T], check: Callable[[T], object], skip_bad: bool, workers: int = 2
) -> tuple[list[T], list[str]]:
    """Run `check` on every item in threads. A DataError stops everything (naming the first bad item and how many
    more there are) unless skip_bad, in which case the bad items are dropped and their messages returned."""

    def run(item: T) -> str | None:
        try:
            check(item)
        except DataError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = list(pool.map(run, items))
    errors = [p for p in problems if p]
    if errors and not skip_bad:
        raise DataError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return [item for item, problem in zip(items, problems, strict=True) if problem is None], errors
