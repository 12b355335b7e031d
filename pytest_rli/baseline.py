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
    return None


def stored_form(metric: dict[str, Any]) -> dict[str, Any]:
    """What a baseline keeps of a recorded metric: enough to compare and to review in a diff."""
    kept = ("assertion", "metric", "value", "ci", "higher_is_better", "layer", "target")
    return {name: metric[name] for name in kept if metric.get(name) is not None}


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
