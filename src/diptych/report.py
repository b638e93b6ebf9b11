"""Static HTML galleries of results: one row per image, input | output | target."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

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
img { max-width: 360px; image-rendering: auto; border: 1px solid #ccc; background: #fff; }
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
