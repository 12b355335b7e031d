"""A content-addressed result store: one JSON file per unit (policy fingerprint × spec × inputs × rli version).

A unit's key hashes the policy's :attr:`~rli.Policy.fingerprint` (its weights and observation
normaliser), the spec's :meth:`~rli.runs.specs.Spec.key` (every setting, seeds included), the
content of the files the spec reads (:meth:`~rli.runs.specs.Spec.inputs_digest`) and the rli
version: the same checkpoint under another name hits, a retrained or edited one misses.
Entries are written atomically (a temporary file in the same folder, then ``os.replace``),
so several processes or machines (on a shared file system) can fill one store at once, and
a sweep interrupted at any point leaves only finished entries. Every entry carries the
SHA-256 of its rows; one that fails that check (or is not readable JSON) is reported as
corrupt and recomputed, never used. JSON only, no pickle.

Example:
    >>> import tempfile
    >>> from rli.runs.store import Store
    >>> store = Store(tempfile.mkdtemp())
    >>> store.put("ab" * 32, [{"metric": "r2", "value": 0.5}])
    >>> store.get("ab" * 32)
    Lookup(rows=[{'metric': 'r2', 'value': 0.5}], status='hit', problem=None)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rli.errors import RliError

FORMAT = 1


def unit_key(fingerprint: str, spec: Any) -> str:
    """The store key of ``spec`` run on the policy with ``fingerprint``."""
    from rli.runs.specs import rli_version

    text = json.dumps({"fingerprint": fingerprint, "spec": spec.key(), "inputs": spec.inputs_digest(),
                       "rli": rli_version(), "format": FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _rows_digest(rows: Any) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Lookup:
    """What the store holds for a key: ``status`` ``"hit"`` (``rows`` usable), ``"missing"`` or ``"corrupt"``."""

    rows: list[dict[str, Any]] | None
    status: str
    problem: str | None = None


class Store:
    """A directory of results, one ``units/<k[:2]>/<k>.json`` per unit; created when missing."""

    def __init__(self, root: str | Path) -> None:
        if not isinstance(root, (str, Path)):
            raise RliError(f"store must be a directory path, not {type(root).__name__}")
        self.root = Path(root)
        try:
            (self.root / "units").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RliError(f"cannot use {str(root)!r} as a result store ({err.strerror}); give a writable "
                           "directory") from None

    def path(self, key: str) -> Path:
        """Where the entry of ``key`` lives."""
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise RliError(f"a store key is a hexadecimal hash, not {key!r}")
        return self.root / "units" / key[:2] / f"{key}.json"

    def get(self, key: str) -> Lookup:
        """The rows stored under ``key``, checked against their digest."""
        path = self.path(key)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return Lookup(None, "missing")
        except (OSError, UnicodeDecodeError) as err:
            return Lookup(None, "corrupt", f"{path} is unreadable ({err})")
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as err:
            return Lookup(None, "corrupt", f"{path} is not valid JSON ({err.msg} at character {err.pos})")
        if not isinstance(entry, dict) or entry.get("key") != key or entry.get("format") != FORMAT:
            return Lookup(None, "corrupt", f"{path} is not an rli store entry for this key")
        rows = entry.get("rows")
        if not isinstance(rows, list) or entry.get("digest") != _rows_digest(rows):
            return Lookup(None, "corrupt", f"{path}: its rows do not match their SHA-256 (edited or truncated)")
        return Lookup(rows, "hit")

    def put(self, key: str, rows: list[dict[str, Any]], **meta: Any) -> None:
        """Store ``rows`` under ``key`` atomically (readers see the old entry or the new one, never a part)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"format": FORMAT, "key": key, **meta, "rows": rows, "digest": _rows_digest(rows)}
        text = json.dumps(entry, sort_keys=True, indent=1)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def keys(self) -> list[str]:
        """Every key with an entry (finished or corrupt), sorted."""
        return sorted(p.stem for p in (self.root / "units").glob("*/*.json"))

    def __len__(self) -> int:
        return len(self.keys())

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r}, {len(self)} entries)"
