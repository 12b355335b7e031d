"""`SweepTable`: the tidy result of a sweep, one row per (checkpoint, analysis, layer, target, metric).

Rows are plain dicts with exactly the keys of :data:`COLUMNS`; the table is pandas-free
(``to_pandas()`` only when pandas is installed) and keeps the units that failed beside
the rows, each naming its checkpoint.

Example:
    >>> from rli.runs.table import SweepTable
    >>> row = dict(checkpoint="run/rl_model_100_steps.zip", step=100, seed=0, analysis="probe", layer="actor.1",
    ...            target="obs[2]", metric="r2", value=0.9, ci_low=0.8, ci_high=0.95, spec_key="ab12")
    >>> table = SweepTable([row])
    >>> len(table), table.filter(metric="r2").to_records()[0]["value"]
    (1, 0.9)
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rli.errors import RliError

#: The columns of every row, in this order (the contract with rli.runstats and the plugin's baselines).
COLUMNS = ("checkpoint", "step", "seed", "analysis", "layer", "target", "metric", "value", "ci_low", "ci_high",
           "spec_key")
_OPTIONAL_INT = ("step", "seed")
_OPTIONAL_STR = ("layer", "target")
_OPTIONAL_FLOAT = ("ci_low", "ci_high")


@dataclass(frozen=True)
class Failure:
    """A unit of a sweep (one checkpoint × one analysis, or a whole checkpoint) that did not finish."""

    checkpoint: str
    analysis: str | None
    spec_key: str | None
    error: str

    def __str__(self) -> str:
        what = f"{self.analysis} ({self.spec_key})" if self.analysis else "loading"
        return f"{self.checkpoint}: {what} failed: {self.error}"


@dataclass(frozen=True)
class UnitCounts:
    """How the units of a sweep were obtained: computed now, read from the store, recomputed over a corrupt entry."""

    computed: int = 0
    cached: int = 0
    recomputed_corrupt: int = 0
    failed: int = 0


def check_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` as a row with exactly the :data:`COLUMNS` and their types; :class:`RliError` naming what is wrong.

    Example:
        >>> check_record(dict(checkpoint="a.zip", step=None, seed=None, analysis="cka", layer=None, target=None,
        ...                   metric="cka", value=1, ci_low=None, ci_high=None, spec_key="k"))["value"]
        1.0
    """
    keys = set(record)
    if keys != set(COLUMNS):
        missing, extra = sorted(set(COLUMNS) - keys), sorted(keys - set(COLUMNS))
        raise RliError(f"a sweep record must have exactly the keys {', '.join(COLUMNS)}; "
                       f"missing {missing or 'none'}, unexpected {extra or 'none'}")
    row = {name: record[name] for name in COLUMNS}
    for name in ("checkpoint", "analysis", "metric", "spec_key"):
        if not isinstance(row[name], str):
            raise RliError(f"a sweep record's {name} must be a string, not {row[name]!r}")
    for name in _OPTIONAL_INT:
        if row[name] is not None and (isinstance(row[name], bool) or not isinstance(row[name], int)):
            raise RliError(f"a sweep record's {name} must be an int or None, not {row[name]!r}")
    for name in _OPTIONAL_STR:
        if row[name] is not None and not isinstance(row[name], str):
            raise RliError(f"a sweep record's {name} must be a string or None, not {row[name]!r}")
    row["value"] = _float(row["value"], "value")
    for name in _OPTIONAL_FLOAT:
        row[name] = None if row[name] is None else _float(row[name], name)
    return row


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            return float(value)  # numpy scalars
        except (TypeError, ValueError):
            raise RliError(f"a sweep record's {name} must be a number, not {value!r}") from None
    return float(value)


class SweepTable:
    """Rows of a sweep (dicts with the keys of :data:`COLUMNS`), the failed units, and how units were obtained.

    ``failures`` lists :class:`Failure` (each names its checkpoint); ``counts`` is a
    :class:`UnitCounts`; ``notes`` lists what the reader should know (corrupt store entries
    that were recomputed). Iterating gives the rows; ``filter(metric="r2", layer="actor.5")``
    keeps the rows equal on every given column.
    """

    def __init__(self, records: Iterable[Mapping[str, Any]], *, failures: Sequence[Failure] = (),
                 counts: UnitCounts | None = None, notes: Sequence[str] = ()) -> None:
        self._rows = [check_record(r) for r in records]
        self.failures = tuple(failures)
        self.counts = counts if counts is not None else UnitCounts()
        self.notes = tuple(notes)

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as new dicts (changing them leaves the table as it is)."""
        return [dict(row) for row in self._rows]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.to_records())

    def __len__(self) -> int:
        return len(self._rows)

    def filter(self, **equal: Any) -> SweepTable:
        """The rows whose columns equal the given values (``filter(analysis="probe", metric="r2")``)."""
        unknown = sorted(set(equal) - set(COLUMNS))
        if unknown:
            raise RliError(f"filter() got unknown column(s) {', '.join(unknown)}; columns: {', '.join(COLUMNS)}")
        rows = [row for row in self._rows if all(row[k] == v for k, v in equal.items())]
        checkpoints = {row["checkpoint"] for row in rows}
        return SweepTable(rows, failures=[f for f in self.failures if f.checkpoint in checkpoints],
                          counts=self.counts, notes=self.notes)

    def to_csv(self, path: str | Path) -> Path:
        """Write the rows as CSV (empty cells for None) and return the path."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for row in self._rows:
                writer.writerow({k: "" if v is None else (repr(v) if isinstance(v, float) else v)
                                 for k, v in row.items()})
        return path

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able): ``records``, ``failures``, ``counts``, ``notes``."""
        return {"records": self.to_records(), "failures": [asdict(f) for f in self.failures],
                "counts": asdict(self.counts), "notes": list(self.notes)}

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (non-finite values as null) and return the path."""
        path = Path(path)
        data = self.to_dict()
        for row in data["records"]:
            for key in ("value", "ci_low", "ci_high"):
                if isinstance(row[key], float) and not math.isfinite(row[key]):
                    row[key] = None
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        return path

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (columns in :data:`COLUMNS` order); needs pandas."""
        try:
            import pandas as pd  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:
            raise RliError("to_pandas() needs pandas (pip install pandas); to_records() and to_csv() do not") from None
        return pd.DataFrame(self._rows, columns=list(COLUMNS))

    def __repr__(self) -> str:
        checkpoints = len({row["checkpoint"] for row in self._rows})
        return (f"SweepTable({len(self)} rows over {checkpoints} checkpoints, {len(self.failures)} failed units, "
                f"{self.counts.computed} computed, {self.counts.cached} from the store)")

    def __str__(self) -> str:
        lines = [repr(self)]
        lines += [f"  failed: {f}" for f in self.failures]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)
