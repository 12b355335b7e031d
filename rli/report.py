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
figure{margin:1rem 0}figcaption{color:#555;font-size:.85rem}img{max-width:100%}
"""


@dataclass
class Section:
    """One part of a report page: a heading, paragraphs, tables, figures and preformatted text."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[Sequence[str], Sequence[Sequence[Any]]]] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)
    preformatted: list[str] = field(default_factory=list)

    def to_html(self) -> str:
        """The section as HTML (figures embedded as data URIs)."""
        parts = [f"<h2>{html.escape(self.title)}</h2>"]
        parts += [f"<p>{html.escape(text)}</p>" for text in self.paragraphs]
        parts += [table_html(headers, rows) for headers, rows in self.tables]
        for path, caption in self.figures:
            data = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts += [f"<pre>{html.escape(text)}</pre>" for text in self.preformatted]
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
