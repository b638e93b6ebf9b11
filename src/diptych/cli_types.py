"""argparse types for the numeric options outside the config: a value out of range is an option error (exit 2)
before any work starts, with the range in the message."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import MAX_COUNT, MAX_SEED, Bounds, within

MAX_TILE = 8192  # pixels a side: a tile is what must fit in memory at once


def integer(low: int, high: int = MAX_COUNT) -> Callable[[str], int]:
    """An integer option in [low, high]."""
    return _bounded(int, within(low, high))


def number(bounds: Bounds) -> Callable[[str], float]:
    """A finite number option within `bounds` (nan and inf are never inside: every bound is finite)."""
    return _bounded(float, bounds)


def positive(high: float) -> Callable[[str], float]:
    """A number option in (0, high]."""
    return number(Bounds(0, high, low_open=True))


def seed() -> Callable[[str], int]:
    """A random seed option: an integer in [0, 2**32 - 1]."""
    return integer(0, MAX_SEED)


def tile(text: str) -> int | str:
    """--tile: 'auto' or a number of pixels in [1, MAX_TILE]."""
    return text if text == "auto" else integer(1, MAX_TILE)(text)


def json_object(text: str) -> dict[str, Any]:
    """A JSON object option: inline JSON text (starting with "{") or the path of a .json file holding one."""
    source = "inline JSON"
    if not text.lstrip().startswith("{"):
        source = text
        try:
            text = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise argparse.ArgumentTypeError(f"{source}: not a readable JSON file ({type(exc).__name__})") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{source}: not valid JSON ({str(exc).split(';')[0]})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{source}: expected a JSON object {{...}}")
    return value


def _bounded(kind: type, bounds: Bounds) -> Callable[[str], float]:
    integral = kind is int

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if integral else 'a number'}") from None
        if value not in bounds:
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {bounds.describe(integral)}")
        return value

    return parse
