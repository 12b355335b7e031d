"""The session's rli metrics as a terminal table and as ``report.json`` / ``report.html``."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path
from typing import Any


def _value(metric: dict[str, Any]) -> str:
    text = f"{metric['value']:.4g}"
    if metric.get("ci"):
        text += f" [{metric['ci'][0]:.4g}, {metric['ci'][1]:.4g}]"
    return text


def _rows(collected: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for nodeid, entry in collected.items():
        for metric in entry["metrics"]:
            verdict = "pass" if metric["passed"] else ("REGRESSED" if metric.get("regressed") else "FAIL")
            rows.append([nodeid, metric["assertion"].removeprefix("assert_"), metric.get("layer") or "",
                         metric.get("target") or "", metric["metric"], _value(metric),
                         f"{metric['op']} {metric['threshold']:.4g}",
                         "" if metric.get("baseline") is None else f"{metric['baseline']:.4g}", verdict])
    return rows


HEADERS = ["test", "assertion", "layer", "target", "metric", "value [95% CI]", "threshold", "baseline", "result"]


def summary_lines(collected: dict[str, dict[str, Any]]) -> list[str]:
    """The end-of-session table, one line per recorded metric."""
    rows = [HEADERS] + _rows(collected)
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def write_session_report(out_dir: Path, collected: dict[str, dict[str, Any]]) -> None:
    """``out_dir/report.json`` with every metric and ``out_dir/report.html`` with the table."""
    from rli import __version__
    from rli.report import Section, write_report

    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    data = {"kind": "pytest-rli session", "created": stamp, "rli_version": __version__,
            "python": platform.python_version(), "tests": collected}
    rows = [row[:-1] + [row[-1] == "pass"] for row in _rows(collected)]
    write_report(out_dir, data, title="rli: interpretability claims", subtitle=f"pytest session, {stamp}",
                 sections=[Section("Metrics", tables=[(HEADERS, rows)])])
