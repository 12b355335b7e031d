"""Baseline files: stored metrics per test node id, plain JSON, written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


class BaselineError(Exception):
    """The baseline file cannot be used (corrupt, or of another format)."""


def read(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{nodeid: {key: stored metric}}`` from ``path`` (empty when the file does not exist yet)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON or bytes that are not UTF-8
        raise BaselineError(f"{path} is not a readable rli baseline ({err}); fix it or regenerate it with "
                            "--rli-update-baseline") from None
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION or not isinstance(data.get("tests"), dict):
        raise BaselineError(f"{path} is not an rli baseline file (format version {FORMAT_VERSION}); "
                            "regenerate it with --rli-update-baseline")
    for nodeid, entry in data["tests"].items():
        bad = _bad_entry(entry)
        if bad is not None:
            raise BaselineError(f"{path}: the entry of {nodeid!r} is damaged ({bad}); fix it or regenerate it with "
                                "--rli-update-baseline")
    return data["tests"]


def _bad_entry(entry: Any) -> str | None:
    """What is wrong with one test's stored metrics, or None."""
    if not isinstance(entry, dict):
        return "not an object of metrics"
    for key, metric in entry.items():
        if not isinstance(metric, dict):
            return f"metric {key!r} is not an object"
        value = metric.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"metric {key!r} has no finite 'value'"
        ci = metric.get("ci")
        if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(
                isinstance(end, (int, float)) and not isinstance(end, bool) for end in ci)):
            return f"metric {key!r} has a 'ci' that is not a [low, high] pair of numbers"
    return None


def stored_form(metric: dict[str, Any]) -> dict[str, Any]:
    """What a baseline keeps of a recorded metric: enough to compare and to review in a diff.

    The value *and* its CI (with its level), and the sample size where the assertion
    knows it (``n`` rows, paired ``episodes`` or CKA groups).

    Example:
        >>> stored_form({"assertion": "assert_probe_r2", "metric": "r2", "value": 0.9, "ci": [0.85, 0.95],
        ...              "higher_is_better": True, "details": {"n": 500}})["n"]
        500
    """
    kept = ("assertion", "metric", "value", "ci", "higher_is_better", "layer", "target")
    out = {name: metric[name] for name in kept if metric.get(name) is not None}
    details = metric.get("details") or {}
    n = next((details[name] for name in ("n", "episodes", "n_groups") if details.get(name) is not None), None)
    if n is not None:
        out["n"] = n
    if out.get("ci") is not None:  # rli's intervals are 95% except TOST's 1 − 2·significance
        out["ci_level"] = 1 - 2 * details["significance"] if "significance" in details else 0.95
    return out


def write(path: Path, tests: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Write ``tests`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": FORMAT_VERSION, "tests": {k: tests[k] for k in sorted(tests)}}, indent=2,
                      sort_keys=True) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def missing(collected: dict[str, dict[str, Any]]) -> list[str]:
    """``"nodeid key"`` of every recorded metric the baseline had no entry for (judged ``missing``)."""
    return [f"{nodeid} {m['key']}" for nodeid, entry in collected.items() for m in entry["metrics"]
            if m.get("change") == "missing"]


def merge(stored: dict[str, dict[str, dict[str, Any]]], collected: dict[str, dict[str, Any]],
          mode: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The baseline after ``--rli-update-baseline=mode``: ``new`` adds the missing metrics, ``failing`` also
    rewrites the regressed ones, ``all`` replaces the entry of every test that recorded metrics.

    Entries of tests that did not run are kept in every mode.

    Example:
        >>> old = {"t::a": {"k": {"value": 1.0}}}
        >>> run = {"t::a": {"metrics": [{"key": "k", "value": 0.5, "change": "regressed"},
        ...                             {"key": "j", "value": 0.7, "change": "missing"}]}}
        >>> sorted(merge(old, run, "new")["t::a"].items())
        [('j', {'value': 0.7}), ('k', {'value': 1.0})]
        >>> merge(old, run, "failing")["t::a"]["k"]
        {'value': 0.5}
    """
    wanted = {"new": ("missing",), "failing": ("missing", "regressed")}.get(mode)
    merged = {nodeid: dict(entry) for nodeid, entry in stored.items()}
    for nodeid, entry in collected.items():
        metrics = [m for m in entry["metrics"] if wanted is None or m.get("change") in wanted]
        if wanted is None:
            merged[nodeid] = {}
        if metrics or wanted is None:
            merged.setdefault(nodeid, {}).update({m["key"]: stored_form(m) for m in metrics})
    return merged


def unused(stored: dict[str, dict[str, dict[str, Any]]], collected: dict[str, dict[str, Any]],
           outcomes: dict[str, str], known: set[str], whole_files: set[str], root: Path) -> list[str]:
    """Baseline entries this run shows to be stale, as ``"nodeid"`` (the test is gone) or ``"nodeid key"``
    (the test passed without recording that metric).

    A test is gone when its file no longer exists, or when its file was collected whole
    (``whole_files``: not narrowed to some of its tests by a ``file::test`` argument) and
    the test is not among the ``known`` (collected, deselected ones included) node ids.
    Tests deselected (``-k``, ``-m``), skipped, failed or outside the paths given are
    not judged, as syrupy does not judge their snapshots.

    Example:
        >>> import pathlib
        >>> stale = unused({"gone.py::t": {}, "a.py::t": {"k": {}, "j": {}}},
        ...                {"a.py::t": {"metrics": [{"key": "k"}]}}, {"a.py::t": "passed"}, {"a.py::t"}, {"a.py"},
        ...                pathlib.Path("/nonexistent"))
        >>> stale
        ['a.py::t j', 'gone.py::t']
    """
    found: list[str] = []
    for nodeid in sorted(stored):
        if nodeid in outcomes:
            if outcomes[nodeid] == "passed":
                recorded = {m["key"] for m in collected.get(nodeid, {}).get("metrics", [])}
                found.extend(f"{nodeid} {key}" for key in sorted(stored[nodeid]) if key not in recorded)
            continue
        if nodeid in known:
            continue
        file = nodeid.split("::")[0]
        if file in whole_files or not (root / file).exists():
            found.append(nodeid)
    return found
