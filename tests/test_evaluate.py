"""`diptych evaluate` and `diptych compare`: metrics.json, per_image.csv, report.html, outputs, and their errors."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from diptych.cli import main
from diptych.compare import compare
from diptych.data.io import from_tensor, read_image, to_tensor, write_image
from diptych.errors import ConfigError, DataError
from diptych.evaluate import evaluate
from diptych.metrics import DEFAULT_METRICS, MetricProtocol, compute_pixel_metrics
from diptych.metrics.lpips import load_st_lpips, lpips_distance
from diptych.metrics.pixel import MS_SSIM_MIN_SIDE
from diptych.train import train

from .conftest import photo_crops, tiny_config, write_aligned
from .test_cli import assert_one_error_line, run_cli

STEP = "step_00000002"
Pairs = dict[str, tuple[np.ndarray, np.ndarray]]  # pair name -> (input, target)


def make_pair(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input = photo, target = its inversion (what the runs below are trained on)."""
    return photo, 255 - photo


def as8bit(arr: np.ndarray) -> np.ndarray:
    """What an 8-bit preview of an array shows."""
    return arr if arr.dtype == np.uint8 else from_tensor(to_tensor(arr), np.uint8)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def runs(root: Path) -> tuple[Path, Path]:
    """Two tiny runs (different seeds) trained for 2 steps on the same data."""
    data = write_aligned(root / "train_data", [make_pair(c) for c in photo_crops("astronaut", 48, 4)])
    out = []
    for seed, name in ((0, "run_a"), (1, "run_b")):
        train(tiny_config(data, max_steps=2, seed=seed), root / name, progress=False)
        out.append(root / name)
    return out[0], out[1]


@pytest.fixture(scope="module")
def aligned_split(root: Path) -> tuple[Path, Pairs]:
    """ds/test/: three aligned pairs of different sizes; ds/train/: decoys that must not be evaluated."""
    photo = photo_crops("coffee", 64, 3, seed=1)
    shapes = [(48, 48), (40, 56), (36, 44)]
    pairs = {f"img_{i:03d}": make_pair(p[:h, :w]) for i, (p, (h, w)) in enumerate(zip(photo, shapes, strict=True))}
    write_aligned(root / "ds" / "test", list(pairs.values()))
    write_aligned(root / "ds" / "train", [make_pair(c) for c in photo_crops("rocket", 32, 2)], prefix="decoy")
    return root / "ds", pairs


@pytest.fixture(scope="module")
def folders_split(root: Path) -> tuple[Path, Pairs]:
    """fds/A/test and fds/B/test, one pair in a sub-folder (its name keeps the folder)."""
    crops = photo_crops("chelsea", 48, 3, seed=2)
    pairs = {name: make_pair(c[:40]) for name, c in zip(["alpha", "beta", "sub/gamma"], crops, strict=True)}
    for name, (a, b) in pairs.items():
        write_image(root / "fds" / "A" / "test" / f"{name}.png", a)
        write_image(root / "fds" / "B" / "test" / f"{name}.png", b)
    return root / "fds", pairs


# ---------------------------------------------------------------------------------------------------------------
# Helpers that read back what an evaluation wrote


class PageParser(HTMLParser):
    """Tables as rows of cells (tag, attributes, text, links), plus every src/href on the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self.links: list[str] = []
        self.cell: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.links.append(a[key])
                if self.cell is not None:
                    self.cell["links"].append((tag, key, a[key]))
        if tag == "table":
            self.tables.append({"id": a.get("id"), "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self.cell = {"tag": tag, "attrs": a, "text": "", "links": []}
            self.tables[-1]["rows"][-1].append(self.cell)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell["text"] += data


def parse_page(page: Path) -> PageParser:
    parser = PageParser()
    parser.feed(page.read_text())
    parser.close()
    return parser


def body_rows(table: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [row for row in table["rows"] if row and all(c["tag"] == "td" for c in row)]


def assert_links_resolve(page: Path, parser: PageParser) -> None:
    assert parser.links, "the page links no files"
    for link in parser.links:
        assert not Path(link).is_absolute(), f"{link}: links must be relative to the page"
        assert (page.parent / link).is_file(), f"{page}: {link} does not resolve to a file"


def report_previews(folder: Path) -> dict[str, list[Path]]:
    """Per image name, the (input, output, target) preview files an evaluation's report.html shows."""
    page = folder / "report.html"
    (images,) = [t for t in parse_page(page).tables if t["id"] == "images"]
    return {
        cells[0]["text"]: [
            (page.parent / link).resolve() for c in cells[1:4] for tag, _, link in c["links"] if tag == "img"
        ]
        for cells in body_rows(images)
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def same(a: float, b: float, rel: float = 1e-5) -> bool:
    """Equal to the CSV's 6 significant digits; NaN equals NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == pytest.approx(b, rel=rel, abs=1e-9)


def check_evaluation(
    out: Path, pairs: Pairs, names: list[str], protocol: MetricProtocol, dtype: type = np.uint8
) -> dict[str, Any]:
    """Every file contract of an evaluation folder; returns metrics.json."""
    summary = json.loads((out / "metrics.json").read_text())
    rows = read_csv(out / "per_image.csv")
    assert summary["count"] == len(rows) == len(pairs)
    assert list(rows[0]) == ["name", "output", *names]
    assert sorted(r["name"] for r in rows) == sorted(pairs)
    assert len({r["output"] for r in rows}) == len(rows), "two images share one output file"

    outputs = {}
    for row in rows:
        target = pairs[row["name"]][1]
        outputs[row["name"]] = read_image(out / row["output"])
        assert outputs[row["name"]].shape == target.shape and outputs[row["name"]].dtype == dtype

    # metrics.json: every metric with mean, CI and n, over the finite per-image values
    assert list(summary["metrics"]) == names
    for n in names:
        m = summary["metrics"][n]
        assert set(m) == {"mean", "std", "n", "ci95_low", "ci95_high"}
        finite = [float(r[n]) for r in rows if math.isfinite(float(r[n]))]
        assert m["n"] == len(finite)
        if finite:
            assert m["mean"] == pytest.approx(np.mean(finite), rel=1e-5)
            assert m["ci95_low"] < m["mean"] < m["ci95_high"]
        else:
            assert m["mean"] is None and m["ci95_low"] is None

    # report.html: one row per image, the CSV's values, links that resolve
    page = out / "report.html"
    parser = parse_page(page)
    assert_links_resolve(page, parser)
    (images,) = [t for t in parser.tables if t["id"] == "images"]
    (summary_table,) = [t for t in parser.tables if t["id"] == "summary"]
    assert [body[0]["text"] for body in body_rows(summary_table)] == names
    html_rows = body_rows(images)
    assert len(html_rows) == len(rows)
    by_name = {r["name"]: r for r in rows}
    assert sorted(cells[0]["text"] for cells in html_rows) == sorted(by_name)
    for cells in html_rows:
        row = by_name[cells[0]["text"]]
        # input | output | target previews: this pair's images, and the output that was written for it
        shown = [read_image(page.parent / link) for c in cells[1:4] for tag, _, link in c["links"] if tag == "img"]
        assert len(shown) == 3
        a, b = pairs[row["name"]]
        np.testing.assert_array_equal(shown[0], as8bit(a))
        np.testing.assert_array_equal(shown[1], as8bit(read_image(out / row["output"])))
        np.testing.assert_array_equal(shown[2], as8bit(b))
        for n, cell in zip(names, cells[4:], strict=True):
            assert same(float(cell["attrs"]["data-v"]), float(row[n])), (row["name"], n)

    # per_image.csv: the metrics of the written output (the file a user gets) against the target
    st_lpips = load_st_lpips() if "st_lpips" in names else None
    for row in rows:
        output, target = to_tensor(outputs[row["name"]]), to_tensor(pairs[row["name"]][1])
        expected = compute_pixel_metrics(output, target, [n for n in names if n != "st_lpips"], protocol)
        if st_lpips is not None:
            expected["st_lpips"] = lpips_distance(st_lpips, output, target)
        for n in names:
            assert same(float(row[n]), expected[n]), (
                f"{row['name']} {n}: per_image.csv says {row[n]}, the written {row['output']} scores {expected[n]}"
            )
    return summary


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# evaluate()


def test_evaluate_aligned_test_split(
    tmp_path: Path, runs: tuple[Path, Path], aligned_split: tuple[Path, Pairs]
) -> None:
    run, _ = runs
    data, pairs = aligned_split
    result = evaluate(run, data, tmp_path / "ev", progress=False)
    assert result.out_dir == tmp_path / "ev"
    summary = check_evaluation(tmp_path / "ev", pairs, list(DEFAULT_METRICS), MetricProtocol())
    assert summary == json.loads(json.dumps(result.summary, allow_nan=True).replace("NaN", "null"))
    assert summary["metrics"]["ms_ssim"]["n"] == 0  # all images are below MS-SSIM's minimum size
    assert summary["metrics"]["psnr"]["n"] == 3
    p = summary["protocol"]
    assert p["generator_sha256"] == sha256(run / "checkpoints" / STEP / "generator.safetensors")
    assert p["checkpoint"] == str(run.resolve())
    assert p["data"] == str((data / "test").resolve())
    assert (p["phase"], p["layout"], p["direction"], p["test_mode"]) == ("test", "aligned", "AtoB", "eval")
    assert p["metrics"]["data_range"] == 255 and p["metrics"]["sample_type"] == "uint8"
    assert (p["metrics"]["channels"], p["metrics"]["crop_border"]) == ("all", 0)
    assert not (tmp_path / "ev" / "outputs" / "decoy_000.png").exists()


def test_evaluate_folders_split_with_protocol_options(
    tmp_path: Path, runs: tuple[Path, Path], folders_split: tuple[Path, Pairs]
) -> None:
    run, _ = runs
    data, pairs = folders_split
    names = ["psnr", "ssim", "l1"]
    evaluate(run, data, tmp_path / "ev", metrics=names, channels="luminance", crop_border=3, progress=False)
    protocol = MetricProtocol(channels="luminance", crop_border=3)
    summary = check_evaluation(tmp_path / "ev", pairs, names, protocol)
    p = summary["protocol"]
    assert (p["layout"], p["phase"], p["data"]) == ("folders", "test", str(data.resolve()))
    assert (p["metrics"]["channels"], p["metrics"]["crop_border"]) == ("luminance", 3)
    assert (tmp_path / "ev" / "outputs" / "sub__gamma.png").is_file()


def test_evaluate_follows_the_runs_direction(
    tmp_path: Path, root: Path, runs: tuple[Path, Path], aligned_split: tuple[Path, Pairs]
) -> None:
    """A BtoA model translates the right half and is scored against the left one."""
    cfg = tiny_config(root / "train_data", max_steps=2)
    cfg.data.direction = "BtoA"
    train(cfg, tmp_path / "run", progress=False)
    data, pairs = aligned_split
    summary = evaluate(tmp_path / "run", data, tmp_path / "ev", metrics=["psnr", "l1"], progress=False).summary
    assert summary["protocol"]["direction"] == "BtoA"
    swapped = {name: (b, a) for name, (a, b) in pairs.items()}
    check_evaluation(tmp_path / "ev", swapped, ["psnr", "l1"], MetricProtocol())


def test_evaluate_paper_mode_is_seeded(
    tmp_path: Path, runs: tuple[Path, Path], aligned_split: tuple[Path, Pairs]
) -> None:
    data = aligned_split[0]
    results = [
        evaluate(runs[0], data, tmp_path / name, metrics=["psnr"], test_mode=mode, seed=3, progress=False).summary
        for name, mode in (("paper1", "paper"), ("paper2", "paper"), ("eval", "eval"))
    ]
    assert results[0]["protocol"]["test_mode"] == "paper" and results[0]["protocol"]["seed"] == 3
    csv1, csv2, csv_eval = (read_csv(tmp_path / n / "per_image.csv") for n in ("paper1", "paper2", "eval"))
    assert csv1 == csv2
    assert csv1 != csv_eval  # per-image batch statistics really were used


def test_evaluate_a_checkpoint_folder_and_a_weights_file(
    tmp_path: Path, runs: tuple[Path, Path], aligned_split: tuple[Path, Pairs]
) -> None:
    run, _ = runs
    data, _ = aligned_split
    weights = run / "checkpoints" / STEP / "generator.safetensors"
    a = evaluate(weights.parent, data, tmp_path / "folder", metrics=["psnr", "l1"], progress=False).summary
    b = evaluate(weights, data, tmp_path / "file", metrics=["psnr", "l1"], progress=False).summary
    assert a["metrics"] == b["metrics"]
    assert a["protocol"]["generator_sha256"] == b["protocol"]["generator_sha256"] == sha256(weights)
    assert b["protocol"]["checkpoint"] == str(weights.resolve())
    assert (tmp_path / "folder" / "per_image.csv").read_text() == (tmp_path / "file" / "per_image.csv").read_text()


def test_names_that_differ_only_after_a_dot_get_their_own_outputs(tmp_path: Path, runs: tuple[Path, Path]) -> None:
    """frame.001 and frame.002 are two pairs; each needs its own output and previews."""
    crops = photo_crops("rocket", 40, 2, seed=4)
    pairs = {f"frame.00{i + 1}": make_pair(c) for i, c in enumerate(crops)}
    for name, (a, b) in pairs.items():
        write_image(tmp_path / "data" / "A" / f"{name}.png", a)
        write_image(tmp_path / "data" / "B" / f"{name}.png", b)
    evaluate(runs[0], tmp_path / "data", tmp_path / "ev", metrics=["psnr", "l1"], progress=False)
    rows = read_csv(tmp_path / "ev" / "per_image.csv")
    assert len(rows) == 2
    assert rows[0]["output"] != rows[1]["output"], f"both pairs were written to {rows[0]['output']}"
    check_evaluation(tmp_path / "ev", pairs, ["psnr", "l1"], MetricProtocol())


def test_evaluate_ms_ssim_on_images_near_its_minimum_size(tmp_path: Path, runs: tuple[Path, Path]) -> None:
    """Default metrics on test images of 170 and 200 px: MS-SSIM is n/a or a value, never a crash."""
    photos = [photo_crops("astronaut", 200, 1, seed=5)[0], photo_crops("coffee", 170, 1, seed=6)[0]]
    write_aligned(tmp_path / "data", [make_pair(p) for p in photos])
    summary = evaluate(runs[0], tmp_path / "data", tmp_path / "ev", progress=False).summary
    assert summary["metrics"]["ms_ssim"]["n"] == sum(p.shape[0] >= MS_SSIM_MIN_SIDE for p in photos)
    assert summary["metrics"]["psnr"]["n"] == 2


def test_evaluate_16bit_grayscale(tmp_path: Path) -> None:
    def gray16(c: np.ndarray) -> np.ndarray:
        return (c.mean(axis=2, keepdims=True) * 257).astype(np.uint16)

    def write(root: Path, crops: list[np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for i, c in enumerate(crops):
            a = gray16(c)
            out[f"p{i}"] = (a, 65535 - a)
            write_image(root / "A" / f"p{i}.png", a)
            write_image(root / "B" / f"p{i}.png", 65535 - a)
        return out

    write(tmp_path / "train", photo_crops("coffee", 40, 2))
    pairs = write(tmp_path / "test", photo_crops("chelsea", 40, 2, seed=3))
    train(tiny_config(tmp_path / "train", max_steps=2), tmp_path / "run", progress=False)
    summary = evaluate(tmp_path / "run", tmp_path / "test", tmp_path / "ev", progress=False).summary
    assert summary["protocol"]["metrics"]["data_range"] == 65535
    assert summary["protocol"]["metrics"]["sample_type"] == "uint16"
    check_evaluation(tmp_path / "ev", pairs, list(DEFAULT_METRICS), MetricProtocol(sample_type="uint16"), np.uint16)
    with Image.open(tmp_path / "ev" / "outputs" / "p0.png") as img:
        assert img.mode == "I;16"
    with Image.open(tmp_path / "ev" / "previews" / "p0_output.png") as img:
        assert img.mode == "L"


def test_evaluate_unknown_metric_is_a_config_error(
    tmp_path: Path, runs: tuple[Path, Path], aligned_split: tuple[Path, Pairs]
) -> None:
    with pytest.raises(ConfigError, match="'lpipz'"):
        evaluate(runs[0], aligned_split[0], tmp_path / "ev", metrics=["psnr", "lpipz"], progress=False)
    assert not (tmp_path / "ev").exists()


# ---------------------------------------------------------------------------------------------------------------
# diptych evaluate


def test_cli_evaluate_prints_means_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path], aligned_split: tuple[Path, Pairs]
) -> None:
    out = tmp_path / "ev"
    code, stdout, err = run_cli(
        ["evaluate", runs[0], aligned_split[0], "--out", out, "--metrics", "psnr,SSIM", "--no-progress"], capsys
    )
    assert code == 0, err
    summary = json.loads((out / "metrics.json").read_text())
    lines = stdout.splitlines()
    assert lines[0].startswith("psnr") and f"{summary['metrics']['psnr']['mean']:.4g}" in lines[0]
    assert "n=3" in lines[0] and "95% CI" in lines[0]
    assert lines[1].startswith("ssim") and lines[-1] == f"report: {(out / 'report.html').resolve()}"
    assert list(summary["metrics"]) == ["psnr", "ssim"]


def test_cli_evaluate_default_out_is_in_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path], aligned_split: tuple[Path, Pairs]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    code, _, err = run_cli(["evaluate", run, aligned_split[0], "--metrics", "l1", "--no-progress"], capsys)
    assert code == 0, err
    assert (run / "eval" / f"test-{STEP}" / "metrics.json").is_file()


def _missing_targets(tmp_path: Path) -> tuple[Path, list[str]]:
    a, b = tmp_path / "data" / "A" / "test", tmp_path / "data" / "B" / "test"
    crops = photo_crops("coffee", 32, 3)
    for i, c in enumerate(crops):
        write_image(a / f"x{i}.png", c)
    write_image(b / "x0.png", 255 - crops[0])
    return tmp_path / "data", [str(a), str(b), "x1", "x2"]


def _size_mismatch(tmp_path: Path) -> tuple[Path, list[str]]:
    crop = photo_crops("coffee", 48, 1)[0]
    a = write_image(tmp_path / "data" / "A" / "p.png", crop[:40])
    b = write_image(tmp_path / "data" / "B" / "p.png", crop[:40, :40])
    return tmp_path / "data", [str(a), str(b), "40x40", "48x40"]


@pytest.mark.parametrize("kind", ["no_checkpoints", "no_checkpoints_default_out", "missing_targets", "size_mismatch"])
def test_cli_evaluate_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path], kind: str
) -> None:
    checkpoint = runs[0]
    data = write_aligned(tmp_path / "ok", [make_pair(c) for c in photo_crops("coffee", 32, 2)])
    if kind.startswith("no_checkpoints"):
        checkpoint = tmp_path / "fresh_run"
        checkpoint.mkdir()
        (checkpoint / "log.jsonl").write_text("")
        named = [str(checkpoint)]
    elif kind == "missing_targets":
        data, named = _missing_targets(tmp_path)
    else:
        data, named = _size_mismatch(tmp_path)
    out = tmp_path / "ev"
    argv = ["evaluate", checkpoint, data, "--no-progress"]
    code, stdout, err = run_cli(argv if kind.endswith("default_out") else [*argv, "--out", out], capsys)
    assert code == 1 and stdout == ""
    assert_one_error_line(err, *named)
    assert not out.exists() and not (checkpoint / "eval").exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [(["--metrics", "psnr,nope"], ["'nope'"])],
    ids=["unknown-metric"],  # (out-of-range numbers are argparse errors: tests/test_config_checks.py)
)
def test_cli_evaluate_bad_options(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    runs: tuple[Path, Path],
    aligned_split: tuple[Path, Pairs],
    extra: list[str],
    named: list[str],
) -> None:
    out = tmp_path / "ev"
    code, stdout, err = run_cli(["evaluate", runs[0], aligned_split[0], "--out", out, *extra], capsys)
    assert code == 1 and stdout == ""
    assert_one_error_line(err, *named)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# compare


@pytest.fixture(scope="module")
def evaluated(runs: tuple[Path, Path], aligned_split: tuple[Path, Pairs]) -> tuple[Path, Path]:
    """run_a evaluated on all three test pairs, run_b on the first two, both into RUN/eval/ by the CLI."""
    data = aligned_split[0]
    assert main(["evaluate", str(runs[0]), str(data), "--no-progress"]) == 0
    assert main(["evaluate", str(runs[1]), str(data), "--no-progress", "--max-items", "2"]) == 0
    return runs


def parse_markdown(text: str) -> list[list[str]]:
    lines = text.strip().splitlines()
    assert set(lines[1]) <= {"|", "-"}
    return [[c.strip() for c in line.strip("|").split("|")] for line in [lines[0], *lines[2:]]]


def test_compare_two_runs(tmp_path: Path, evaluated: tuple[Path, Path], aligned_split: tuple[Path, Pairs]) -> None:
    run_a, run_b = evaluated
    folders = [r / "eval" / f"test-{STEP}" for r in evaluated]
    summaries = [json.loads((f / "metrics.json").read_text()) for f in folders]
    table, page = compare([run_a, run_b], tmp_path / "cmp")
    assert page == tmp_path / "cmp" / "compare.html"
    assert (tmp_path / "cmp" / "compare.md").read_text() == table + "\n"

    header, *rows = parse_markdown(table)
    assert header == ["run", "n", *DEFAULT_METRICS]
    assert [r[:2] for r in rows] == [["run_a", "3"], ["run_b", "2"]]
    for row, summary in zip(rows, summaries, strict=True):
        for name, cell in zip(DEFAULT_METRICS, row[2:], strict=True):
            m = summary["metrics"][name]
            if m["mean"] is None:
                assert cell == "n/a"
            else:
                assert cell.split(" ")[0] == f"{m['mean']:.4g}"
                assert cell.split("±")[1] == f"{(m['ci95_high'] - m['ci95_low']) / 2:.3g}"
    assert rows[0][2:] != rows[1][2:]

    stored = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert list(stored) == ["run_a", "run_b"]
    for label, folder, summary in zip(["run_a", "run_b"], folders, summaries, strict=True):
        assert stored[label] == {"folder": str(folder), **summary}

    parser = parse_page(page)
    assert_links_resolve(page, parser)
    images = parser.tables[-1]
    rows_html = body_rows(images)
    common = sorted(aligned_split[1])[:2]
    assert [cells[0]["text"] for cells in rows_html] == common
    previews = [report_previews(f) for f in folders]  # name -> [input, output, target]
    for name, cells in zip(common, rows_html, strict=True):
        linked = [(page.parent / link).resolve() for c in cells for tag, _, link in c["links"] if tag == "img"]
        assert linked == [previews[0][name][0], previews[0][name][2], previews[0][name][1], previews[1][name][1]]
        per_image = {f: {r["name"]: r for r in read_csv(f / "per_image.csv")} for f in folders}
        for cell, folder in zip(cells[3:], folders, strict=True):
            assert f"psnr {float(per_image[folder][name]['psnr']):.4g}" in cell["text"]


def test_compare_evaluation_folders_gets_unique_labels(tmp_path: Path, evaluated: tuple[Path, Path]) -> None:
    folder = evaluated[0] / "eval" / f"test-{STEP}"
    table, _ = compare([folder, evaluated[0]], tmp_path / "cmp")
    _, *rows = parse_markdown(table)
    assert [r[0] for r in rows] == ["run_a", "run_a (2)"]
    assert rows[0][1:] == rows[1][1:]


def test_compare_needs_two(tmp_path: Path, evaluated: tuple[Path, Path]) -> None:
    with pytest.raises(DataError, match="at least two"):
        compare([evaluated[0]], tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()


def test_compare_a_run_without_evaluation(tmp_path: Path, evaluated: tuple[Path, Path]) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(DataError) as info:
        compare([evaluated[0], fresh], tmp_path / "cmp")
    assert str(fresh) in str(info.value) and "diptych evaluate" in str(info.value)
    assert not (tmp_path / "cmp").exists()


def test_cli_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str], evaluated: tuple[Path, Path]) -> None:
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", *evaluated, "--out", out], capsys)
    assert code == 0, err
    table = (out / "compare.md").read_text()
    assert stdout == table + f"page: {(out / 'compare.html').resolve()}\n"
    assert "| run_a | 3 |" in stdout and "| run_b | 2 |" in stdout


@pytest.mark.parametrize("kind", ["one_run", "no_evaluation"])
def test_cli_compare_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], evaluated: tuple[Path, Path], kind: str
) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    argv = [evaluated[0]] if kind == "one_run" else [evaluated[0], fresh]
    code, stdout, err = run_cli(["compare", *argv, "--out", tmp_path / "cmp"], capsys)
    assert code == 1 and stdout == ""
    assert_one_error_line(err, *(["two"] if kind == "one_run" else [str(fresh)]))
    assert not (tmp_path / "cmp").exists()


def test_missing_test_split_is_an_error_not_the_training_data(tmp_path: Path) -> None:
    """A dataset with train/ but no test/ is not silently evaluated on its training pairs."""
    from diptych.errors import DataError
    from diptych.scoring import load_test_pairs

    write_aligned(tmp_path / "ds" / "train", [make_pair(c) for c in photo_crops("rocket", 32, 2)])
    with pytest.raises(DataError, match=r"no test/ split \(found train/\)"):
        load_test_pairs(tmp_path / "ds", "test")
    # A folder of pairs with no split sub-folders is evaluated as it is.
    write_aligned(tmp_path / "flat", [make_pair(c) for c in photo_crops("rocket", 32, 2)])
    assert len(load_test_pairs(tmp_path / "flat", "test")[2]) == 2
