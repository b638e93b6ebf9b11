"""Activation memory of a forward pass, measured from every tensor operation (layers and functional calls alike)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


@dataclass
class Allocations:
    """Bytes of the storages the operations of a forward pass created: all of them (what autograd would keep for
    backward, roughly), and the most alive at one time (what inference needs)."""

    total: float = 0
    peak: float = 0


class _Counter(TorchDispatchMode):
    """Counts each new storage an operation returns once, and its bytes as alive until its last tensor is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = Allocations()
        self.live = 0.0
        self.refs: dict[int, list[int]] = {}  # storage address -> [tensors alive, bytes]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if not key:
            return  # (an empty tensor)
        if key not in self.refs:
            self.refs[key] = [0, storage.nbytes()]
            self.counts.total += storage.nbytes()
            self.live += storage.nbytes()
            self.counts.peak = max(self.counts.peak, self.live)
        self.refs[key][0] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.refs.get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                self.live -= entry[1]
                del self.refs[key]


def measure_allocations(forward: Callable[[], object]) -> Allocations:
    """The activation bytes of one call of `forward` (its result is released before returning)."""
    counter = _Counter()
    with counter:
        forward()
    return counter.counts


def bytes_per_input_pixel(forward: Callable[[int], object], small: int, large: int) -> Allocations:
    """Activation bytes per input pixel of a network, `forward(s)` running it on an s x s input: the growth from
    a `small` to a `large` side, so costs that do not grow with the image (weights reordered per call) are left
    out."""
    a, b = measure_allocations(lambda: forward(small)), measure_allocations(lambda: forward(large))
    pixels = large * large - small * small
    return Allocations(total=max(0.0, b.total - a.total) / pixels, peak=max(0.0, b.peak - a.peak) / pixels)
