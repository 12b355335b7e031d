"""Run history: one JSON file per pytest session with rli metrics, ``NNNN_<commit>.json``, written atomically.

Each file keeps the commit, the machine (platform, python, torch, CPU count), the rli
version, a timestamp and every metric with its CI, so that any later run can be
compared with it (``--rli-compare=NNNN``). Numbers are taken by an exclusive link of a
finished temporary file, so two sessions writing at once never share a number and a
reader never sees half a file. Importing this module imports neither torch nor rli.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> path = write(folder, {"t.py::t": {"k": {"value": 0.9, "ci": [0.8, 1.0]}}}, commit="abc1234")
    >>> path.name, load(folder, "last")["tests"]["t.py::t"]["k"]["value"]
    ('0001_abc1234.json', 0.9)
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
KIND = "rli run"
_NAME = re.compile(r"^(\d{4,})_([A-Za-z0-9._-]+)\.json$")


class HistoryError(Exception):
    """A run-history file cannot be used (absent, corrupt, or of another format)."""


def commit(root: Path) -> str:
    """``git rev-parse --short HEAD`` in ``root``, or ``"nogit"`` (no git, not a repository, no commit yet)."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "nogit"
    text = done.stdout.strip()
    return text if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{4,40}", text) else "nogit"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Where the run happened (read from package metadata: torch is not imported)."""
    return {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "torch": _version("torch"), "cpu_count": os.cpu_count(), "rli": _version("rli")}


def numbers(folder: Path) -> dict[int, Path]:
    """``{run number: file}`` of the history files in ``folder`` (by name; contents are not read)."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def write(folder: Path, tests: dict[str, dict[str, dict[str, Any]]], *, commit: str,
          info: dict[str, Any] | None = None) -> Path:
    """Write this run's ``tests`` (``{nodeid: {key: metric}}``) as the next ``NNNN_<commit>.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    data = {"kind": KIND, "version": FORMAT_VERSION, "commit": commit, "created": stamp,
            "machine": machine() if info is None else info, "tests": {k: tests[k] for k in sorted(tests)}}
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".run.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            for _ in range(1000):
                number = max(numbers(folder), default=0) + 1
                data["number"] = number
                out.seek(0)
                out.truncate()
                out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
                out.flush()
                target = folder / f"{number:04d}_{commit}.json"
                try:
                    os.link(temporary, target)  # fails if another session took the number meanwhile
                except FileExistsError:
                    continue
                return target
        raise HistoryError(f"could not take a run number in {folder} (1000 collisions)")
    finally:
        Path(temporary).unlink(missing_ok=True)


def resolve(folder: Path, reference: str) -> Path:
    """The history file ``reference`` names: ``"last"``, a run number (``"3"``, ``"0003"``) or a path."""
    if reference == "last":
        found = numbers(folder)
        if not found:
            raise HistoryError(f"--rli-compare=last: no run history in {folder} yet; run the tests once first")
        return found[max(found)]
    if reference.isdigit():
        found = numbers(folder)
        if int(reference) not in found:
            have = ", ".join(f"{n:04d}" for n in sorted(found)[-5:]) or "none"
            raise HistoryError(f"--rli-compare={reference}: no run {int(reference):04d} in {folder} "
                               f"(latest: {have}); pass a run number, 'last' or a path to a run file")
        return found[int(reference)]
    path = Path(reference)
    if not path.is_file():
        raise HistoryError(f"--rli-compare={reference}: no such run file; pass a run number, 'last' or a path")
    return path


def _bad_tests(tests: Any) -> str | None:
    if not isinstance(tests, dict):
        return "'tests' is not an object"
    for nodeid, entry in tests.items():
        if not isinstance(entry, dict):
            return f"the entry of {nodeid!r} is not an object"
        for key, metric in entry.items():
            value = metric.get("value") if isinstance(metric, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"metric {key!r} of {nodeid!r} has no finite 'value'"
    return None


def read(path: Path) -> dict[str, Any]:
    """The run stored in ``path``, checked (HistoryError naming the file and the fix when it is damaged)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise HistoryError(f"{path} is not a readable rli run file ({err}); delete it or compare with another run"
                           ) from None
    if not isinstance(data, dict) or data.get("kind") != KIND or data.get("version") != FORMAT_VERSION:
        raise HistoryError(f"{path} is not an rli run file (format version {FORMAT_VERSION}); compare with another "
                           "run")
    bad = _bad_tests(data.get("tests"))
    if bad is not None:
        raise HistoryError(f"{path} is damaged ({bad}); delete it or compare with another run")
    return data


def load(folder: Path, reference: str) -> dict[str, Any]:
    """:func:`read` of :func:`resolve`."""
    return read(resolve(folder, reference))
