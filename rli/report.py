"""Self-contained reports: ``report.json`` (every number) and ``report.html`` (readable offline).

Used by ``rli interrogate`` and by the pytest plugin's ``--rli-report``: one page
style, tables and figures embedded (no external files, scripts or fonts).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:70rem;
color:#1b1b1b;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{padding:.25rem .7rem;text-align:left;
border-bottom:1px solid #eee;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;
font-variant-numeric:tabular-nums}.pass{color:#11772d;font-weight:600}.fail{color:#b3261e;font-weight:600}
.meta{color:#555;font-size:.85rem}pre{background:#f7f7f7;padding:.6rem;overflow-x:auto;font-size:.85rem}
figure{margin:1rem 0}figcaption{color:#555;font-size:.85rem;max-width:60rem}img{max-width:100%;height:auto}
ul{padding-left:1.4rem}li{margin:.25rem 0}.scroll{overflow-x:auto}
"""


@dataclass
class Section:
    """One part of a report page: a heading, paragraphs, a list, tables, figures and preformatted text.

    ``items`` are list entries: a string, or ``(lead, text)`` with the lead in bold.
    Figures are ``(png_path, caption)``, embedded as data URIs. All text is escaped.

    Example:
        >>> html_text = Section("Steps", items=[("1. Probing", "R² 0.98"), "done"]).to_html()
        >>> "<li><strong>1. Probing</strong> R² 0.98</li>" in html_text
        True
    """

    title: str
    paragraphs: list[str] = field(default_factory=list)
    items: list[str | tuple[str, str]] = field(default_factory=list)
    tables: list[tuple[Sequence[str], Sequence[Sequence[Any]]]] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)
    preformatted: list[str] = field(default_factory=list)

    def to_html(self) -> str:
        """The section as HTML (figures embedded as data URIs)."""
        parts = [f"<section><h2>{html.escape(self.title)}</h2>"]
        parts += [f"<p>{html.escape(text)}</p>" for text in self.paragraphs]
        if self.items:
            entries = (f"<li><strong>{html.escape(item[0])}</strong> {html.escape(item[1])}</li>"
                       if isinstance(item, tuple) else f"<li>{html.escape(item)}</li>" for item in self.items)
            parts.append(f"<ul>{''.join(entries)}</ul>")
        for path, caption in self.figures:
            data = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts += [f'<div class="scroll">{table_html(headers, rows)}</div>' for headers, rows in self.tables]
        parts += [f"<pre>{html.escape(text)}</pre>" for text in self.preformatted]
        parts.append("</section>")
        return "\n".join(parts)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        css = "pass" if value else "fail"
        return f'<td class="{css}">{"pass" if value else "FAIL"}</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; booleans render as pass/FAIL, floats with 4 significant digits.

    Example:
        >>> table_html(["metric", "ok"], [["r2", True]]).count("<tr>")
        2
    """
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out_dir: Path, data: dict[str, Any], *, title: str, subtitle: str = "",
                 sections: Sequence[Section] = ()) -> tuple[Path, Path]:
    """Write ``out_dir/report.json`` (``data``) and ``out_dir/report.html``; returns both paths.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> json_path, html_path = write_report(out, {"r2": 0.97}, title="demo", sections=[Section("numbers")])
        >>> json.loads(json_path.read_text())["r2"], html_path.name
        (0.97, 'report.html')
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    json_path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    body = "\n".join(section.to_html() for section in sections)
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=\"meta\">{html.escape(subtitle)}</p>{body}</body></html>\n")
    html_path.write_text(page)
    return json_path, html_path


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
