"""Assertions about training runs: a representation emerges by a step, stays, and holds across seeds.

They take a sweep's records (``SweepTable.to_records()`` or a :class:`rli.sb3.ProbeCallback`
store): dicts with ``checkpoint, step, seed, analysis, layer, target, metric, value, ci_low,
ci_high, spec_key``. Like those of :mod:`pytest_rli.assertions` they record their metric in
the running test's context (summary, JUnit, baselines) and fail with the evidence: every
checkpoint's value and CI against the threshold.

Rules (calibrated in tests/test_emergence.py):

- :func:`assert_emerges_by`: the emergence step (first step whose CI lower bound is above
  ``min`` there and at every later step, :func:`rli.emergence.emergence`) exists and is at
  most ``step``.
- :func:`assert_stable_across`: from ``after`` on (default: the first step whose CI lower
  bound clears ``min``) every checkpoint's CI lower bound is above ``min``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_rli.assertions import finish
from pytest_rli.recording import Metric
from rli import runstats
from rli.emergence import Emergence, dips, emergence_from_records
from rli.errors import RliError
from rli.runstats import SeedEstimate


def _record(assertion: str, key: str, *, metric: str, value: float, threshold: float, op: str, passed: bool,
            summary: str, evidence: Sequence[str], ci: Any = None, layer: Any = None, target: Any = None,
            details: dict[str, Any] | None = None) -> Metric:
    """Record the metric through :func:`pytest_rli.assertions.finish` (higher is better when ``op`` is ``>=``)."""
    __tracebackhide__ = True
    return finish(assertion, key, metric=metric, value=value, threshold=threshold, op=op, higher_is_better=op == ">=",
                  passed=passed, summary=summary, evidence=evidence, ci=ci,
                  layer=None if layer is None else str(layer), target=None if target is None else str(target),
                  details=details)


def _min(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RliError(f"min must be a number (the threshold the metric's CI must clear), not {value!r}")
    return float(value)


def _curve(records: Any, metric: str, layer: Any, target: Any, threshold: float, analysis: str | None,
           seed: Any) -> Emergence:
    return emergence_from_records(list(records), threshold=threshold, metric=metric, layer=layer, target=target,
                                  analysis=analysis, seed=seed)


def assert_emerges_by(records: Iterable[Mapping[str, Any]], *, step: int, layer: Any, target: Any, min: float,
                      metric: str = "r2", analysis: str | None = None, seed: Any = None) -> Emergence:
    """``metric`` of ``target`` at ``layer`` emerges by training step ``step``: its CI clears ``min`` for good by then.

    Emergence = the first step whose CI lower bound is above ``min`` there and at every later
    checkpoint. Returns the :class:`rli.emergence.Emergence`.

    Example:
        >>> from pytest_rli.run_assertions import assert_emerges_by
        >>> rows = [{"step": s, "seed": 0, "layer": 5, "target": "u", "metric": "r2", "value": v,
        ...          "ci_low": v - 0.02, "ci_high": v + 0.02} for s, v in [(0, 0.5), (10, 0.96), (20, 0.97)]]
        >>> assert_emerges_by(rows, step=10, layer=5, target="u", min=0.9).step
        10
    """
    __tracebackhide__ = True
    threshold = _min(min)
    if isinstance(step, bool) or not isinstance(step, int):
        raise RliError(f"step must be a training step (an integer), not {step!r}")
    found = _curve(records, metric, layer, target, threshold, analysis, seed)
    passed = found.step is not None and found.step <= step
    if found.step is None:
        why = f"it never clears {threshold:g} for good (rule: {found.rule})"
    else:
        why = f"it clears {threshold:g} for good only at step {found.step}"
    summary = (f"assert_emerges_by: {metric} of {target!r} at layer {layer!r} does not emerge by step {step}: {why}"
               if not passed else "")
    _record("assert_emerges_by", f"emerges_by:{layer}:{target}:{metric}", metric=f"emergence step ({metric} ≥ {min:g})",
            value=float("inf") if found.step is None else float(found.step), threshold=float(step), op="<=",
            passed=passed, summary=summary, layer=layer, target=target,
            evidence=[f"per checkpoint ({metric}, 95% CI) against {threshold:g}:", *found.lines(),
                      f"bracket: emerged after step {found.bracket[0]} and by step {found.bracket[1]}"],
            details={"emergence": found.to_dict()})
    return found


def assert_stable_across(records: Iterable[Mapping[str, Any]], *, layer: Any, target: Any, min: float,
                         metric: str = "r2", after: int | None = None, analysis: str | None = None,
                         seed: Any = None) -> Emergence:
    """From step ``after`` on, no checkpoint's ``metric`` falls below ``min``: every CI lower bound stays above it.

    ``after=None`` starts at the first step whose CI lower bound clears ``min`` (the test fails
    if none does). Returns the :class:`rli.emergence.Emergence` of the curve.

    Example:
        >>> from pytest_rli.run_assertions import assert_stable_across
        >>> rows = [{"step": s, "seed": 0, "layer": 5, "target": "u", "metric": "r2", "value": v,
        ...          "ci_low": v - 0.02, "ci_high": v + 0.02} for s, v in [(0, 0.5), (10, 0.96), (20, 0.97)]]
        >>> assert_stable_across(rows, layer=5, target="u", min=0.9).first_clear
        10
    """
    __tracebackhide__ = True
    threshold = _min(min)
    if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
        raise RliError(f"after must be a training step (an integer) or None, not {after!r}")
    found = _curve(records, metric, layer, target, threshold, analysis, seed)
    start, judged, dipped = dips(found, after)
    passed = bool(judged) and not dipped
    if start is None:
        why = f"no checkpoint's CI lower bound ever clears {threshold:g}"
    elif not judged:
        why = f"no checkpoint at or after step {start} (steps {found.steps[0]}..{found.steps[-1]})"
    else:
        why = f"the CI lower bound is not above {threshold:g} at steps {dipped}"
    summary = "" if passed else (f"assert_stable_across: {metric} of {target!r} at layer {layer!r} is not stable "
                                 f"above {threshold:g} from step {start}: {why}")
    worst = builtins.min((lo for s, lo in zip(found.steps, found.ci_low) if s in judged), default=float("nan"))
    _record("assert_stable_across", f"stable_across:{layer}:{target}:{metric}", metric=f"min CI low of {metric}",
            value=worst, threshold=threshold, op=">=", passed=passed, summary=summary, layer=layer, target=target,
            evidence=[f"per checkpoint ({metric}, 95% CI) against {threshold:g}, judged from step {start}:",
                      *found.lines()],
            details={"emergence": found.to_dict(), "after": start})
    return found


def over_seeds(records: Iterable[Mapping[str, Any]], metric: str = "r2", *, layer: Any = None, target: Any = None,
               analysis: str | None = None, step: int | str = "last", strata: Sequence[str] = ("target",),
               confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> SeedEstimate:
    """IQM of ``metric`` over training seeds with its stratified-bootstrap CI (for ``over="seeds"`` assertions).

    The same as :func:`rli.runstats.over_seeds`; the returned estimate's ``ci[0]`` is what a
    seed-aware assertion compares with its ``min``.

    Example:
        >>> from pytest_rli.run_assertions import over_seeds
        >>> rows = [{"seed": s, "step": 100, "layer": 5, "target": "u", "metric": "r2", "value": v}
        ...         for s, v in enumerate([0.95, 0.97, 0.96, 0.6])]
        >>> round(over_seeds(rows, layer=5, n_resamples=2000).value, 3)
        0.955
    """
    return runstats.over_seeds(records, metric, layer=layer, target=target, analysis=analysis, step=step, strata=strata,
                       statistic="iqm", confidence=confidence, n_resamples=n_resamples, seed=seed)
