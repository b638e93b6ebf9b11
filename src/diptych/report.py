"""Static HTML galleries of results: one row per image, input | output | target."""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic


@dataclass(frozen=True)
class GalleryRow:
    """One example: a name and the image files to show side by side (target may be absent)."""

    name: str
    input: Path
    output: Path
    target: Path | None = None


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; background: #fafafa; color: #222; }
table { border-collapse: collapse; }
th, td { padding: 6px 10px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
img { max-width: min(360px, 24vw); image-rendering: auto; border: 1px solid #ccc; background: #fff; }
.meta { color: #555; margin-bottom: 1rem; }
"""


def write_gallery(rows: list[GalleryRow], page: Path, title: str, notes: str = "") -> Path:
    """Write an HTML page whose image links are relative to the page (the folder can be moved)."""
    page.parent.mkdir(parents=True, exist_ok=True)
    has_target = any(r.target is not None for r in rows)
    head = "<tr><th>name</th><th>input</th><th>output</th>" + ("<th>target</th>" if has_target else "") + "</tr>"
    body = []
    for r in rows:
        cells = [f"<td>{html.escape(r.name)}</td>", _img(r.input, page), _img(r.output, page)]
        if has_target:
            cells.append(_img(r.target, page) if r.target else "<td></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='meta'>{html.escape(notes)}</p><table>{head}{''.join(body)}</table></body></html>\n"
    )
    write_text_atomic(page, text)
    return page


def _img(path: Path, page: Path) -> str:
    rel = os.path.relpath(path, page.parent)
    return f"<td><a href='{html.escape(rel)}'><img src='{html.escape(rel)}' loading='lazy'></a></td>"


@dataclass(frozen=True)
class EvaluationRow:
    """One evaluated image: previews of input, output, (unpaired methods) its reconstruction after the way back, and
    (when there is one) its target, and its metric values."""

    name: str
    input: Path
    output: Path
    target: Path | None
    values: dict[str, float] = field(default_factory=dict)
    reconstructed: Path | None = None

    def images(self) -> list[tuple[str, Path | None]]:
        """The preview columns, by heading."""
        return [
            ("input", self.input),
            ("output", self.output),
            ("reconstructed", self.reconstructed),
            ("target", self.target),
        ]


SORT_SCRIPT = """
<script>
const HIGHER = %s;
function sortTable(col, metric, worstFirst) {
  const body = document.querySelector('#images tbody');
  const rows = Array.from(body.rows);
  const up = HIGHER[metric] ? worstFirst : !worstFirst;  // ascending when the worst values are the small ones
  rows.sort((r1, r2) => {
    const a = parseFloat(r1.cells[col].dataset.v), b = parseFloat(r2.cells[col].dataset.v);
    if (isNaN(a)) return 1; if (isNaN(b)) return -1;
    return up ? a - b : b - a;
  });
  rows.forEach(r => body.appendChild(r));
  document.querySelectorAll('#images th.metric').forEach(th => th.classList.remove('sorted'));
  document.querySelector('#images th[data-metric="' + metric + '"]').classList.add('sorted');
}
document.querySelectorAll('#images th.metric').forEach(th => {
  let worst = false;
  th.addEventListener('click', () => { worst = !worst; sortTable(+th.dataset.col, th.dataset.metric, worst); });
});
// Initial order: report.html#sort=METRIC:best|worst (a shareable link), else worst first by the first metric.
const wanted = /#sort=([\\w-]+)(?::(best|worst))?/.exec(location.hash);
const chosen = wanted && document.querySelector('#images th[data-metric="' + wanted[1] + '"]');
const first = chosen || document.querySelector('#images th.metric');
if (first) sortTable(+first.dataset.col, first.dataset.metric, !(chosen && wanted[2] === 'best'));
</script>
"""


def write_evaluation_report(rows: list[EvaluationRow], page: Path, summary: dict[str, Any], names: list[str]) -> Path:
    """An HTML report: metric means with 95% CIs, the protocol, and a per-image table sortable by any metric."""
    from .metrics.pixel import higher_is_better

    def fmt(v: float | None) -> str:
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4g}"

    metric_rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{fmt(m['mean'])}</td><td>[{fmt(m['ci95_low'])}, {fmt(m['ci95_high'])}]</td>"
        f"<td>{m['n']}</td><td>{'higher' if higher_is_better(n) else 'lower'}</td></tr>"
        for n, m in summary["metrics"].items()
    )
    protocol = html.escape(json.dumps(summary["protocol"], indent=2))
    # The image columns every row has (a CycleGAN report: input | translated | reconstructed [| target]).
    columns = [c for c, _ in EvaluationRow("", page, page, None).images() if any(dict(r.images())[c] for r in rows)]
    head = (
        "<tr><th>name</th>"
        + "".join(f"<th>{c}</th>" for c in columns)
        + "".join(
            f"<th class='metric' data-col='{1 + len(columns) + i}' data-metric='{html.escape(n)}' "
            f"title='click: worst first / best first'>{html.escape(n)} &#8645;</th>"
            for i, n in enumerate(names)
        )
    )
    body = []
    for r in rows:
        shown = dict(r.images())
        cells = [f"<td>{html.escape(r.name)}</td>"]
        cells += [_img(shown[c], page) if shown[c] is not None else "<td></td>" for c in columns]
        for n in names:
            v = r.values.get(n, float("nan"))
            data_v = "NaN" if not math.isfinite(v) else repr(v)
            cells.append(f"<td data-v='{data_v}'>{fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    script = SORT_SCRIPT % json.dumps({n: higher_is_better(n) for n in names})
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>diptych evaluation</title>"
        f"<style>{STYLE} th.metric {{ cursor: pointer; }} th.sorted {{ background: #e8eefc; }}</style></head><body>"
        f"<h1>diptych evaluation</h1><p class='meta'>{summary['count']} images; rows start worst first by "
        f"{html.escape(names[0]) if names else 'name'}; click a metric's header to re-sort, or link to "
        f"report.html#sort=METRIC:best.</p>"
        f"<table id='summary'><tr><th>metric</th><th>mean</th><th>95% CI</th><th>n</th><th>better</th></tr>"
        f"{metric_rows}</table><details><summary>protocol (everything needed to reproduce these numbers)</summary>"
        f"<pre>{protocol}</pre></details><h2>images</h2><table id='images'><thead>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{script}</body></html>\n"
    )
    write_text_atomic(page, text)
    return page
