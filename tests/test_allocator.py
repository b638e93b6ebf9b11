"""The allocator setting training makes: freed activation-sized blocks are reused, not faulted in again."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SRC

# Three 24 MiB blocks touched and freed, four times (a step's activations, roughly). With glibc's defaults the first
# round maps each block afresh, and every later one gives the 72 MiB back to the OS when freed (above the trim
# threshold, twice the adapted mmap threshold), so every round faults them in again.
ROUNDS = """
import ctypes, resource, sys
from diptych.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 24 * 1024 * 1024
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(size) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[1:]))
"""


def faults_after_first_round(mode: str) -> int:
    """Minor page faults of rounds 2-4 in a fresh process, with the setting (retain) or glibc's defaults."""
    # (Nothing of the caller's environment: an LD_PRELOAD allocator or GLIBC_TUNABLES would change the answer.)
    env = {"PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the setting is glibc's (mallopt)"
)
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    pages = 3 * 24 * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
    assert faults_after_first_round("default") > pages  # (what the setting is for: at least one round faulted)
    assert faults_after_first_round("retain") < pages // 100


def test_nothing_is_changed_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    from diptych import allocator

    def no_libc(*args: object) -> None:
        raise AssertionError("the C library was loaded")

    monkeypatch.setattr(allocator.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(allocator.ctypes, "CDLL", no_libc)
    allocator.retain_freed_memory.cache_clear()
    try:
        assert allocator.retain_freed_memory() is False
    finally:
        allocator.retain_freed_memory.cache_clear()


def test_training_makes_the_setting_before_its_first_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train_module = importlib.import_module("diptych.train")  # (the package's `train` is the function)
    from diptych.recipes.cyclegan import CycleGANRecipe

    from .test_cyclegan import cyclegan_config, unpaired_root

    events: list[str] = []
    monkeypatch.setattr(train_module, "retain_freed_memory", lambda: events.append("retain") or True)
    step = CycleGANRecipe.train_step
    monkeypatch.setattr(CycleGANRecipe, "train_step", lambda self, batch: events.append("step") or step(self, batch))
    train_module.train(cyclegan_config(unpaired_root(tmp_path), 2), tmp_path / "run", progress=False)
    assert events == ["retain", "step", "step"]
