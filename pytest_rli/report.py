"""The session's rli metrics as a terminal table and as ``report.json`` / ``report.html``."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path
from typing import Any


def _value(metric: dict[str, Any], value: str = "value", ci: str = "ci") -> str:
    if metric.get(value) is None:
        return ""
    text = f"{metric[value]:.4g}"
    if metric.get(ci):
        text += f" [{metric[ci][0]:.4g}, {metric[ci][1]:.4g}]"
    return text


def _change(metric: dict[str, Any]) -> str:
    """``improved (CIs)``, ``unchanged (tolerance)``, ``missing``... or empty without a baseline."""
    change = metric.get("change")
    if change is None:
        return ""
    rule = {"intervals": " (CIs)", "tolerance": " (tolerance)"}.get(metric.get("rule") or "", "")
    return change + rule


def _rows(collected: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for nodeid, entry in collected.items():
        for metric in entry["metrics"]:
            verdict = "pass" if metric["passed"] else ("REGRESSED" if metric.get("regressed") else "FAIL")
            rows.append([nodeid, metric["assertion"].removeprefix("assert_"), metric.get("layer") or "",
                         metric.get("target") or "", metric["metric"], _value(metric),
                         f"{metric['op']} {metric['threshold']:.4g}",
                         _value(metric, "baseline", "baseline_ci"), _change(metric), verdict])
    return rows


HEADERS = ["test", "assertion", "layer", "target", "metric", "value [95% CI]", "threshold", "baseline",
           "vs baseline", "result"]


def summary_lines(collected: dict[str, dict[str, Any]]) -> list[str]:
    """The end-of-session table, one line per recorded metric."""
    rows = [HEADERS, *_rows(collected)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def write_session_report(out_dir: Path, collected: dict[str, dict[str, Any]]) -> None:
    """``out_dir/report.json`` with every metric and ``out_dir/report.html`` with the table."""
    from rli import __version__
    from rli.report import Section, write_report

    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    data = {"kind": "pytest-rli session", "created": stamp, "rli_version": __version__,
            "python": platform.python_version(), "tests": collected}
    rows = [[*row[:-1], row[-1] == "pass"] for row in _rows(collected)]
    write_report(out_dir, data, title="rli: interpretability claims", subtitle=f"pytest session, {stamp}",
                 sections=[Section("Metrics", tables=[(HEADERS, rows)])])


def history_tests(collected: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """What a run-history file keeps of the session: per test, each metric's stored form (value, CI, n...)
    with the test's outcome and the verdict against the baseline, if any."""
    from pytest_rli.baseline import stored_form

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for nodeid, entry in collected.items():
        out[nodeid] = {}
        for metric in entry["metrics"]:
            kept = stored_form(metric)
            kept.update({name: metric[name] for name in ("passed", "change", "rule") if metric.get(name) is not None})
            kept["outcome"] = entry["outcome"]
            out[nodeid][metric["key"]] = kept
    return out


def listing(items: list[str], limit: int = 5) -> str:
    """The first ``limit`` of ``items``, comma-separated, and how many more."""
    return ", ".join(items[:limit]) + (f" … ({len(items) - limit} more)" if len(items) > limit else "")


def baseline_lines(collected: dict[str, dict[str, Any]], unused: list[str], missing: list[str], update: str | None,
                   allowed: dict[str, bool]) -> list[str]:
    """The summary's lines about the baseline: counts per verdict, then missing and unused entries (and whether
    they fail the session: only when comparing, unless allowed)."""
    counts: dict[str, int] = {}
    rules: dict[str, int] = {}
    for entry in collected.values():
        for metric in entry["metrics"]:
            if metric.get("change") is not None:
                counts[metric["change"]] = counts.get(metric["change"], 0) + 1
            if metric.get("rule") is not None:
                rules[metric["rule"]] = rules.get(metric["rule"], 0) + 1
    lines = []
    if counts:
        order = ("improved", "unchanged", "regressed", "missing")
        lines.append("rli: against the baseline: " + ", ".join(f"{counts[c]} {c}" for c in order if c in counts)
                     + (f" ({rules.get('intervals', 0)} judged by non-overlapping 95% CIs, "
                        f"{rules.get('tolerance', 0)} by the tolerance: a side without a CI)" if rules else ""))
    for kind, items, what, flag, fix in (
            ("missing", missing, "recorded metric(s) have no baseline entry", "--rli-allow-missing",
             "add them with --rli-update-baseline=new"),
            ("unused", unused, "stored baseline(s) not checked in this run are unused (the test is gone, or passed "
             "without recording the metric)", "--rli-allow-unused", "delete them from the baseline file")):
        if not items:
            continue
        if update is not None:
            consequence = "kept as they are" if kind == "unused" else f"written (--rli-update-baseline={update})"
        elif allowed[kind]:
            consequence = f"allowed by {flag}"
        else:
            consequence = f"this fails the session: {fix}, or pass {flag}"
        lines.append(f"rli: {len(items)} {what}; {consequence}: {listing(items)}")
    return lines


def compare_lines(collected: dict[str, dict[str, Any]], reference: dict[str, Any], tolerance: float) -> list[str]:
    """``--rli-compare``: this session's metrics against a stored run, classified as baselines are
    (:func:`pytest_rli.regression.classify_stored`), as a table with a count line above it."""
    from pytest_rli.regression import classify_stored

    then = reference["tests"]
    rows = [["test", "metric", f"run {reference.get('number', '?'):04d}" if isinstance(reference.get("number"), int)
             else "reference", "now", "change"]]
    counts: dict[str, int] = {}
    now_keys = set()
    for nodeid, entry in collected.items():
        for metric in entry["metrics"]:
            now_keys.add((nodeid, metric["key"]))
            old = then.get(nodeid, {}).get(metric["key"])
            if old is None:
                change, shown = "new", ""
            else:
                verdict = classify_stored(metric, old, tolerance)
                change = verdict.change + (" (CIs)" if verdict.rule == "intervals" else " (tolerance)")
                shown = _value(old)
                counts[verdict.change] = counts.get(verdict.change, 0) + 1
            rows.append([nodeid, metric["key"], shown, _value(metric), change])
    gone = sum(1 for nodeid, entry in then.items() for key in entry if (nodeid, key) not in now_keys)
    machine = reference.get("machine") or {}
    head = (f"rli: this run vs run {reference.get('number', '?')} (commit {reference.get('commit', '?')}, "
            f"{reference.get('created', '?')}, {machine.get('platform', '?')}): "
            + ", ".join(f"{counts.get(c, 0)} {c}" for c in ("improved", "unchanged", "regressed"))
            + f"; {len(rows) - 1 - sum(counts.values())} new here, {gone} not measured this run")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [head] + ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
