"""`diptych compare`: several evaluations side by side, as a table and one HTML page with the same images."""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .config import parse_json
from .data.paired import file_stem
from .errors import ConfigError, DataError
from .evaluate import METRICS_FILE
from .report import STYLE
from .weights import first_line


@dataclass(frozen=True)
class LoadedEvaluation:
    """One evaluation folder's summary and per-image rows."""

    label: str
    folder: Path
    summary: dict[str, Any]
    rows: dict[str, dict[str, str]]


def find_evaluation(path: Path) -> Path:
    """An evaluation folder, or a run folder's newest evaluation (RUN/eval/*/metrics.json)."""
    path = Path(path)
    if (path / METRICS_FILE).is_file():
        return path
    found = sorted((path / "eval").glob(f"*/{METRICS_FILE}"), key=lambda p: p.stat().st_mtime)
    if found:
        return found[-1].parent
    raise DataError(f"{path}: no {METRICS_FILE} here or in {path}/eval/*/; run `diptych evaluate` on it first")


def load_evaluation(path: Path) -> LoadedEvaluation:
    """Read metrics.json and per_image.csv of an evaluation."""
    import csv

    folder = find_evaluation(path)
    try:
        summary = parse_json((folder / METRICS_FILE).read_bytes(), str(folder / METRICS_FILE))
        _check_summary(summary, folder / METRICS_FILE)
        with open(folder / "per_image.csv", newline="") as f:
            rows = {r["name"]: r for r in csv.DictReader(f)}
    except (OSError, KeyError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{folder}: unreadable evaluation ({first_line(exc)}); evaluate again") from None
    except ConfigError as exc:
        raise DataError(f"{exc}; evaluate again") from None
    label = folder.parent.parent.name if folder.parent.name == "eval" else folder.name
    return LoadedEvaluation(label, folder, summary, rows)


def _check_summary(summary: Any, file: Path) -> None:
    """Refuse a metrics.json without what the table shows: a count and, per metric, a numeric mean or null."""

    def number(v: Any) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool))

    if isinstance(summary, dict) and isinstance(summary.get("directions"), dict) and "metrics" not in summary:
        folders = " or ".join(str(file.parent / d) for d in summary["directions"])
        raise DataError(f"{file}: an evaluation of both directions; compare one direction's folder ({folders})")
    metrics = summary.get("metrics") if isinstance(summary, dict) else None
    ok = isinstance(metrics, dict) and isinstance(summary.get("count"), int)
    ok = ok and all(
        isinstance(m, dict) and all(number(m.get(k)) for k in ("mean", "ci95_low", "ci95_high"))
        for m in metrics.values()
    )
    if not ok:
        raise DataError(f"{file}: not a diptych evaluation summary (a count and per-metric means); evaluate again")


def compare(paths: list[Path], out_dir: Path) -> tuple[str, Path]:
    """Write compare.md/compare.json and compare.html into out_dir; return the text table and the page path."""
    if len(paths) < 2:
        raise DataError("compare needs at least two runs or evaluation folders")
    evals = [load_evaluation(Path(p)) for p in paths]
    labels = _unique_labels([e.label for e in evals])
    names = list(dict.fromkeys(n for e in evals for n in e.summary["metrics"]))
    table = _text_table(evals, labels, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "compare.md", table + "\n")
    write_text_atomic(
        out_dir / "compare.json",
        json.dumps(
            {lab: {"folder": str(e.folder), **e.summary} for lab, e in zip(labels, evals, strict=True)}, indent=2
        ),
    )
    page = _write_page(evals, labels, names, out_dir / "compare.html")
    return table, page


def _unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


def _fmt(m: dict[str, Any] | None) -> str:
    if not m or m.get("mean") is None:
        return "n/a"
    low, high = m.get("ci95_low"), m.get("ci95_high")
    ci = f" ±{(high - low) / 2:.3g}" if low is not None and high is not None else ""
    return f"{m['mean']:.4g}{ci}"


def _text_table(evals: list[LoadedEvaluation], labels: list[str], names: list[str]) -> str:
    header = "| run | n | " + " | ".join(names) + " |"
    sep = "|---|---|" + "---|" * len(names)
    lines = [header, sep]
    for lab, e in zip(labels, evals, strict=True):
        cells = [_fmt(e.summary["metrics"].get(n)) for n in names]
        lines.append(f"| {lab} | {e.summary['count']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_page(evals: list[LoadedEvaluation], labels: list[str], names: list[str], page: Path) -> Path:
    common = [n for n in evals[0].rows if all(n in e.rows for e in evals[1:])]
    first = evals[0].folder / "previews"

    def img(path: Path) -> str:
        rel = html.escape(os.path.relpath(path, page.parent))
        return f"<a href='{rel}'><img src='{rel}' loading='lazy'></a>"

    head = "<tr><th>image</th><th>input</th><th>target</th>" + "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
    body = []
    for name in common:
        s = file_stem(name)
        cells = [f"<td>{html.escape(name)}</td>", f"<td>{img(first / f'{s}_input.png')}</td>"]
        cells.append(f"<td>{img(first / f'{s}_target.png')}</td>")
        for e in evals:
            vals = ", ".join(f"{n} {_cell(e.rows[name].get(n))}" for n in names if n in e.rows[name])
            cells.append(
                f"<td>{img(e.folder / 'previews' / f'{s}_output.png')}<br><small>{html.escape(vals)}</small></td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = _html_summary(evals, labels, names)
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>diptych comparison</title><style>{STYLE}</style>"
        f"</head><body><h1>diptych comparison</h1>{table}<h2>the same test images ({len(common)} in common)</h2>"
        f"<table>{head}</tr>{''.join(body)}</table></body></html>\n"
    )
    write_text_atomic(page, text)
    return page


def _cell(v: str | None) -> str:
    try:
        x = float(v) if v not in (None, "") else math.nan
    except ValueError:
        return str(v)
    return "n/a" if not math.isfinite(x) else f"{x:.4g}"


def _html_summary(evals: list[LoadedEvaluation], labels: list[str], names: list[str]) -> str:
    head = "<tr><th>run</th><th>n</th>" + "".join(f"<th>{html.escape(n)} (mean ± 95% CI)</th>" for n in names) + "</tr>"
    rows = "".join(
        f"<tr><td>{html.escape(lab)}</td><td>{e.summary['count']}</td>"
        + "".join(f"<td>{html.escape(_fmt(e.summary['metrics'].get(n)))}</td>" for n in names)
        + "</tr>"
        for lab, e in zip(labels, evals, strict=True)
    )
    return f"<table>{head}{rows}</table>"
