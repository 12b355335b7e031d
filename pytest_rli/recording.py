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

from pytest_rli.regression import classify, usable_interval


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
    baseline_ci: tuple[float, float] | None = None
    change: str | None = None  # improved / unchanged / regressed vs the baseline, "missing" when it has none
    rule: str | None = None  # what decided ``change``: "intervals" or "tolerance"

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        out = asdict(self)
        out["ci"] = list(self.ci) if self.ci is not None else None
        out["baseline_ci"] = list(self.baseline_ci) if self.baseline_ci is not None else None
        return out


@dataclass
class TestContext:
    """What the plugin knows about the running test: its node id and stored baseline.

    ``update`` is the ``--rli-update-baseline`` mode (``"new"``, ``"failing"``, ``"all"``)
    or ``None``; under ``failing`` and ``all`` a regression is recorded, not raised.
    ``anonymous`` remembers which unnamed array target each metric key was measured on,
    so that two different ones in one test are an error rather than two metrics told
    apart only by their order.
    """

    nodeid: str
    baseline: dict[str, dict[str, Any]] | None = None
    tolerance: float = 0.02
    update: str | None = None
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


@dataclass(frozen=True)
class Judgement:
    """A metric against the running test's baseline: the stored value and CI, the verdict, and the
    evidence line for the failure message (all ``None`` without a baseline)."""

    baseline: float | None = None
    baseline_ci: tuple[float, float] | None = None
    change: str | None = None
    rule: str | None = None
    why: str | None = None
    tolerance: float | None = None
    regressed: bool = False  # fail the test for it (a regression, and not being rewritten)

    def evidence(self, metric: str) -> list[str]:
        """The line the failure message shows about the baseline (none without a stored value)."""
        if self.baseline is None:
            return []
        return [f"baseline: {metric} {self.change} by {self.rule}: {self.why}"
                + (" — REGRESSED" if self.regressed else "")]

    def failure(self, assertion: str, metric: str, value: float, ci: Any) -> str:
        """The headline of the failure raised for a regression whose absolute threshold still holds."""
        if self.rule == "intervals" and self.baseline_ci is not None and ci is not None:
            return (f"{assertion}: {metric} regressed from the baseline {self.baseline:.4g} "
                    f"[{self.baseline_ci[0]:.4g}, {self.baseline_ci[1]:.4g}] to {value:.4g} "
                    f"[{float(ci[0]):.4g}, {float(ci[1]):.4g}] (the 95% CIs do not overlap); "
                    "the absolute threshold still holds")
        return (f"{assertion}: {metric} regressed from the baseline {self.baseline:.4g} to {value:.4g} "
                f"(beyond tolerance {self.tolerance:.4g}); the absolute threshold still holds")


def judge(context: TestContext | None, key: str, value: float, ci: Any, higher_is_better: bool,
          tolerance: float | None) -> Judgement:
    """How metric ``key`` of the running test compares with its stored baseline entry.

    The CIs decide when both sides have one, else the tolerance (the assertion's
    ``tolerance=``, else the ``rli_baseline_tolerance`` ini key); see
    :mod:`pytest_rli.regression`.

    Example:
        >>> context = TestContext("t", baseline={"k": {"value": 0.9, "ci": [0.88, 0.92]}})
        >>> judge(context, "k", 0.7, (0.68, 0.72), True, None).change
        'regressed'
    """
    if context is None or context.baseline is None:
        return Judgement()
    stored = context.baseline.get(key)
    if stored is None:
        return Judgement(change="missing")
    tol = context.tolerance if tolerance is None else float(tolerance)
    base = float(stored["value"])
    verdict = classify(value, ci, base, stored.get("ci"), higher_is_better=higher_is_better, tolerance=tol)
    regressed = verdict.change == "regressed" and context.update not in ("failing", "all")
    return Judgement(baseline=base, baseline_ci=usable_interval(base, stored.get("ci")), change=verdict.change,
                     rule=verdict.rule, why=verdict.why, tolerance=tol, regressed=regressed)
