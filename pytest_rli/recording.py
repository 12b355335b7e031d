"""Metrics measured by rli assertions, and the per-test context they are recorded in.

The plugin opens a :class:`TestContext` around each test's call phase; the
assertions (also usable as plain functions outside pytest) record one
:class:`Metric` each and check it against the stored baseline, if any. Importing
this module imports neither torch nor rli.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One measured number, what it was compared to, and the verdict."""

    assertion: str
    key: str
    metric: str
    value: float
    threshold: float
    op: str
    higher_is_better: bool
    passed: bool
    ci: tuple[float, float] | None = None
    layer: str | None = None
    target: str | None = None
    baseline: float | None = None
    regressed: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        out = asdict(self)
        out["ci"] = list(self.ci) if self.ci is not None else None
        return out


@dataclass
class TestContext:
    """What the plugin knows about the running test: its node id and stored baseline.

    ``anonymous`` remembers which unnamed array target each metric key was measured on,
    so that two different ones in one test are an error rather than two metrics told
    apart only by their order.
    """

    nodeid: str
    baseline: dict[str, dict[str, Any]] | None = None
    tolerance: float = 0.02
    updating: bool = False
    records: list[Metric] = field(default_factory=list)
    anonymous: dict[str, str] = field(default_factory=dict)  # metric key -> digest of its unnamed array target

    def key(self, base: str) -> str:
        """``base``, made unique within the test (``#2``, ``#3`` for repeated identical assertions)."""
        taken = {m.key for m in self.records}
        if base not in taken:
            return base
        n = 2
        while f"{base}#{n}" in taken:
            n += 1
        return f"{base}#{n}"


_current: contextvars.ContextVar[TestContext | None] = contextvars.ContextVar("rli_test_context", default=None)


def current() -> TestContext | None:
    """The running test's context (``None`` outside the plugin, e.g. in a notebook)."""
    return _current.get()


@contextlib.contextmanager
def recording(context: TestContext) -> Iterator[TestContext]:
    """Make ``context`` current for the duration (the plugin wraps each test call in this)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def compare_to_baseline(context: TestContext | None, key: str, value: float, higher_is_better: bool,
                        tolerance: float | None) -> tuple[float | None, bool, float]:
    """``(baseline value or None, regressed?, tolerance used)`` for a metric of the running test."""
    if context is None or context.baseline is None:
        return None, False, tolerance if tolerance is not None else 0.0
    tol = context.tolerance if tolerance is None else float(tolerance)
    stored = context.baseline.get(key)
    if stored is None:
        return None, False, tol
    base = float(stored["value"])
    regressed = value < base - tol if higher_is_better else value > base + tol
    return base, regressed and not context.updating, tol
