"""Baseline files: stored metrics per test node id, plain JSON, written atomically."""

from __future__ import annotations

import json
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
    except (OSError, json.JSONDecodeError) as err:
        raise BaselineError(f"{path} is not a readable rli baseline ({err}); fix it or regenerate it with "
                            "--rli-update-baseline") from None
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION or not isinstance(data.get("tests"), dict):
        raise BaselineError(f"{path} is not an rli baseline file (format version {FORMAT_VERSION}); "
                            "regenerate it with --rli-update-baseline")
    return data["tests"]


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
