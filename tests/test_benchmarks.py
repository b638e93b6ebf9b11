"""The benchmark scripts run (on a tiny size) and print their figures; timings themselves are not tested."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


def test_sr_training_benchmark_smoke() -> None:
    cmd = [sys.executable, str(BENCHMARKS / "sr_training.py"), "--quick", "--threads", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    assert out.startswith("machine: ")
    assert "| sr | msrresnet (tiny) | 16, 2 |" in out and "| realesrgan | rrdbnet (tiny) | 16, 2 |" in out


def test_sr_tiling_benchmark_smoke() -> None:
    cmd = [sys.executable, str(BENCHMARKS / "sr_tiling.py"), "--random", "--n-blocks", "1", "--size", "40"]
    cmd += ["--configs", "32:8", "32:default", "--threads", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    assert out.startswith("machine: ") and "untrained rrdbnet_x4 (1 blocks), fp32, astronaut 40x40 -> 160x160" in out
    assert "| 32 | 8 | 2 x 2 |" in out and "| 32 | 16 (default) | 2 x 2 |" in out


def test_channels_last_benchmark_smoke() -> None:
    cmd = [sys.executable, str(BENCHMARKS / "channels_last.py"), "--cases", "32x2x1", "--rounds", "1"]
    out = subprocess.run(
        [*cmd, "--steps", "1", "--warmup", "0"], check=True, capture_output=True, text=True, timeout=300
    )
    assert out.stdout.startswith("machine: ")
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 32 | 2 | 1 |"))
    nchw, last, ratio = (float(cell.rstrip("x")) for cell in row.strip("| ").split(" | ")[3:])
    assert nchw > 0 and last > 0 and ratio == pytest.approx(nchw / last, rel=0.01, abs=0.01)


REFERENCE = BENCHMARKS.parent / ".reference" / "pytorch-CycleGAN-and-pix2pix"


@pytest.mark.skipif(
    not (REFERENCE / "models" / "cycle_gan_model.py").is_file(),
    reason="no reference checkout in .reference/ (see benchmarks/vs_reference.py)",
)
def test_cyclegan_vs_reference_benchmark_smoke() -> None:
    cmd = [sys.executable, str(BENCHMARKS / "cyclegan_vs_reference.py"), "--reference", str(REFERENCE)]
    cmd += ["--size", "32", "--ngf", "4", "--steps", "1", "--warmup", "1", "--threads", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    assert out.startswith("machine: ")
    assert "CycleGAN, 32x32, batch 1, ngf 4, 1 thread(s): mean of 1 steps after 1" in out
    rows = [line for line in out.splitlines() if line.startswith("| training step (s) | ")]
    assert len(rows) == 1 and rows[0].count("x)") == 3  # reference, diptych auto, diptych fp32, each with a speed-up
    assert "| peak RSS (MiB) |" in out


def test_ablation_benchmark_smoke(tmp_path: Path) -> None:
    """The issue-13 ablation harness builds a real task, trains two variants through the CLI, and tabulates them."""
    cmd = [sys.executable, str(BENCHMARKS / "ablation.py"), "--quick", "--out", str(tmp_path), "--tasks", "glyphs"]
    cmd += ["--variants", "paper,resize-upsample", "--no-wall-time", "--threads", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, cwd=BENCHMARKS).stdout
    assert out.startswith("machine: ") and "**glyphs, equal steps**" in out
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert {"mean of training targets", "input, unchanged", "paper", "resize-upsample"} <= set(rows)
    assert rows["resize-upsample"].startswith("| resize-upsample | 6 | ")
    from diptych.data.io import read_image

    strip = read_image(tmp_path / "pictures" / "glyphs.png")
    assert strip.shape[:2] == (3 * 32, 4 * 32)  # 3 held-out glyphs: input | paper | resize-upsample | target
    results = json.loads((tmp_path / "results.json").read_text())
    scored = results["tasks"]["glyphs"]["budgets"]["equal steps"]["paper"][0]["scores"]
    assert len(scored) == len(list((tmp_path / "data" / "glyphs" / "test" / "A").iterdir()))
    # The input-unchanged baseline: the sans glyph scored as the serif one, as numpy computes it independently.
    test = tmp_path / "data" / "glyphs" / "test"
    for name, got in results["tasks"]["glyphs"]["baselines"]["input, unchanged"].items():
        a, b = (read_image(test / side / f"{name}.png").astype(np.float64) / 255 for side in "AB")
        assert got["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((a - b) ** 2)), abs=1e-3)
        assert got["l1"] == pytest.approx(np.abs(a - b).mean(), abs=1e-5)

    # --reuse adds a variant to the finished ablation without training the runs it already has again; without
    # --no-wall-time the variant also trains for the paper run's CPU time, converted to steps by probe runs.
    paper_log = tmp_path / "runs" / "glyphs" / "paper_seed0" / "log.jsonl"
    before = paper_log.stat().st_mtime_ns
    cmd[cmd.index("paper,resize-upsample")] = "paper,ema"
    cmd.remove("--no-wall-time")
    out = subprocess.run([*cmd, "--reuse"], check=True, capture_output=True, text=True, timeout=600, cwd=BENCHMARKS)
    steps_rows, time_rows = out.stdout.split("**glyphs, equal wall time**")
    rows = {line.split(" | ")[0].strip("| "): line for line in steps_rows.splitlines() if line.startswith("| ")}
    assert {"paper", "ema"} <= set(rows) and paper_log.stat().st_mtime_ns == before
    assert rows["ema"].startswith("| ema | 6 | ")
    budget = json.loads(next(line for line in out.stdout.splitlines() if '"budget": "time"' in line))
    assert budget["variant"] == "ema" and budget["steps"] >= 1
    assert f"| ema | {budget['steps']} | " in time_rows and (tmp_path / "runs" / "glyphs" / "ema_seed0_time").is_dir()
    assert not (tmp_path / "runs" / "glyphs" / "probe").exists()  # the probe runs are removed


@pytest.mark.skipif(
    not (REFERENCE / "models" / "cycle_gan_model.py").is_file(),
    reason="no reference checkout in .reference/ (see benchmarks/vs_reference.py)",
)
def test_cyclegan_quality_benchmark_smoke(tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCHMARKS / "cyclegan_quality.py"), "--reference", str(REFERENCE)]
    cmd += ["--work", str(tmp_path / "work"), "--strips", str(tmp_path / "strips"), "--seeds", "0", "--parallel", "1"]
    cmd += ["--train-images", "4", "--test-images", "2", "--epochs", "1", "--size", "32", "--load-size", "32"]
    cmd += ["--ngf", "4", "--strip-rows", "2"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
    for task in ("glyphs", "photo2edges"):
        for direction in ("AtoB", "BtoA"):
            rows = [line for line in out.splitlines() if line.startswith(f"| {task} | {direction} | ")]
            assert [row.split(" | ")[2] for row in rows] == ["reference", "diptych", "diptych - reference"]
            assert all(row.count("[") == 5 for row in rows)  # five metrics, each with its 95% interval
            assert (tmp_path / "strips" / f"cyclegan_quality_{task}_{direction}.png").is_file()
    assert (tmp_path / "work" / "scores.json").is_file()


def test_sr_inference_benchmark_smoke() -> None:
    cmd = [sys.executable, str(BENCHMARKS / "sr_inference.py"), "--quick", "--threads", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    assert out.startswith("machine: ") and "load average before: " in out
    assert "| rrdbnet (n_blocks 23) | 12x12 |" in out and "| compact (n_convs 16) | 48x48 |" in out
    assert "64x64 -> 256x256 through tiles" in out and "| bf16 | 512 / 64 |" in out


def test_ablation_denoise_task_is_the_demos_noise_and_the_same_every_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """denoise pairs: B a clean crop, A the same crop with the demo's Gaussian noise (clipped, so its spread is
    below sigma), drawn from the photo itself, so every build (every run) sees the same noisy photos."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from ablation import build_photo_task

    from diptych.data.io import read_image
    from diptych.demo import NOISE_SIGMA

    first, second = (build_photo_task(tmp_path / name, "denoise", 32, 6, 2) for name in ("one", "two"))
    for split, count in (("train", 6), ("test", 2)):
        names = sorted(p.name for p in (first / split / "A").iterdir())
        assert len(names) == count
        for name in names:
            a, b = (read_image(first / split / side / name).astype(np.float64) / 255 for side in "AB")
            assert a.shape == b.shape == (32, 32, 3)
            assert 0.3 * NOISE_SIGMA < np.std(a - b) <= NOISE_SIGMA * 1.05 and abs(np.mean(a - b)) < 0.05
            assert np.array_equal(read_image(first / split / "A" / name), read_image(second / split / "A" / name))
