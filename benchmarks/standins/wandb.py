"""Stand-in for wandb (see README.md): the benchmark runs the reference with wandb logging off."""

from __future__ import annotations

from typing import Any

run = None


def init(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("wandb is not available in this benchmark; run the reference without --use_wandb")


class Image:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("wandb is not available in this benchmark")
