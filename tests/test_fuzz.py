"""A fast, seeded sample of the fuzz harness (benchmarks/fuzz.py): no traceback, hang, silent corruption or leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz.py"
FAILURES = ("traceback", "hang", "silently wrong", "half-written", "lost work", "messy error")
SAMPLE = 60


def run_fuzz(*args: str, out: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the harness in its own process (it forks one child per case, which a pytest process must not do)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CUDA_VISIBLE_DEVICES")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    cmd = [sys.executable, str(FUZZ), *args] + (["--out", str(out)] if out else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=FUZZ.parent)


def test_generation_is_seeded_and_covers_every_family() -> None:
    first = run_fuzz("--list", "--seed", "3").stdout.splitlines()
    again = run_fuzz("--list", "--seed", "3").stdout.splitlines()
    assert first == again
    ids = [line.split(" ", 1)[0] for line in first[:-1]]
    assert len(ids) == len(set(ids)) >= 1000
    families = {case_id.split("/", 1)[0] for case_id in ids}
    assert {"png", "jpeg", "tiff", "npy", "dicom", "nifti", "bytes", "names", "layout"} <= families
    assert {"checkpoint", "options", "reference", "compare", "signals", "nonfinite", "range", "geometry"} <= families
    assert {"unpaired", "cyclegan-options", "cyclegan-checkpoint", "cyclegan-resume"} <= families
    commands = {case_id.rsplit("/", 1)[1] for case_id in ids}
    for command in ("translate", "translate_--skip-bad", "translate_--tile", "data_check", "train", "evaluate"):
        assert command in commands
    for command in ("export", "info", "compare", "convert-reference", "train_--resume", "data_combine", "data_split"):
        assert command in commands
    for command in ("train_--serial-batches", "evaluate_--direction_BtoA", "export_--direction_BtoA"):
        assert command in commands


def test_fuzz_sample_has_no_traceback_hang_silent_corruption_or_leftovers(tmp_path: Path) -> None:
    proc = run_fuzz("--sample", str(SAMPLE), "--jobs", "2", "--no-signals", "--seed", "0", out=tmp_path)
    report_file = tmp_path / "results.json"
    assert report_file.exists(), proc.stderr[-3000:]
    report = json.loads(report_file.read_text())
    runs = report["runs"]
    assert len(runs) + len(report["build_errors"]) == SAMPLE
    assert len({run["family"] for run in runs}) >= 10
    failures = [f"[{r['outcome']}] {r['case']}: {r['detail']}" for r in runs if r["outcome"] in FAILURES]
    assert not failures, "\n".join(failures)
    assert proc.returncode == 0, proc.stdout[-3000:]
