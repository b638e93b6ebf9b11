"""The benchmark scripts run (on a tiny size) and print their figures; timings themselves are not tested."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_tiled_translate_benchmark_smoke() -> None:
    cmd = [sys.executable, str(BENCHMARKS / "tiled_translate.py"), "--sizes", "256", "300"]
    cmd += ["--tile", "256", "--overlap", "32", "--ngf", "4", "--threads", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    assert out.startswith("machine: ")
    assert "| 256x256 | 0.1 |" in out and "| 300x300 |" in out
    assert "largest peak RSS" in out


def test_tiled_labels_benchmark_smoke() -> None:
    cmd = [sys.executable, str(BENCHMARKS / "tiled_labels.py"), "--size", "300", "--classes", "5"]
    cmd += ["--tile", "256", "--overlap", "32", "--ngf", "4", "--threads", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    assert out.startswith("machine: ")
    assert "5-class label map 300x300" in out and "peak RSS" in out


def test_hd_benchmark_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "hd.py"), "--quick"], check=True, capture_output=True, text=True, timeout=300
    ).stdout
    assert out.startswith("machine: ")
    assert "| G inference 256x128 | bf16 |" in out and "| train step 64x64, grad checkpointing | fp32 |" in out
