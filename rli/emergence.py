"""When does a representation emerge during training: the first step whose CI clears a threshold and stays clear.

The rule (:func:`emergence`): over checkpoints sorted by training step, the emergence step
is the **first step whose CI lower bound is above the threshold at that step and at every
later step**. Its uncertainty is the bracket ``(last_below, step]``: ``last_below`` is the
last step before it whose CI *upper* bound is below the threshold (the latest checkpoint at
which the metric had confidently not emerged; ``None`` when there is none, i.e. it may have
emerged before the first checkpoint). Emergence happened after ``last_below`` and by ``step``.

Calibration (tests/test_emergence.py): on a metric that never truly reaches the threshold
(flat just below it, estimation noise correlated across checkpoints, per-checkpoint 95% CIs)
the rule declares emergence in at most 5% of runs (it can only do so when the last
checkpoint's lower bound clears, a ≤ 2.5% event); on a planted sigmoid it finds it.

Records are those of a sweep (``SweepTable.to_records()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rli import checks
from rli.errors import RliError
from rli.runstats import select

RULE = "first step whose CI lower bound is above the threshold there and at every later step"


@dataclass(frozen=True)
class Emergence:
    """Where a metric's curve over training steps clears ``threshold`` for good (see the module's rule).

    ``step`` is the emergence step (``None``: it never clears for good); ``bracket`` is
    ``(last_below, step)``; ``first_clear`` is the first step whose lower bound clears at all
    (earlier than ``step`` when the curve dips back); ``steps``, ``values``, ``ci_low`` and
    ``ci_high`` are the curve it was read from, sorted by step.
    """

    threshold: float
    step: int | None
    bracket: tuple[int | None, int | None]
    first_clear: int | None
    steps: tuple[int, ...]
    values: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    metric: str | None = None
    rule: str = RULE

    @property
    def emerged(self) -> bool:
        """Whether the curve clears the threshold for good within the checkpoints."""
        return self.step is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"threshold": self.threshold, "step": self.step, "bracket": list(self.bracket),
                "first_clear": self.first_clear, "steps": list(self.steps), "values": list(self.values),
                "ci_low": list(self.ci_low), "ci_high": list(self.ci_high), "metric": self.metric, "rule": self.rule}

    def lines(self) -> list[str]:
        """One line per checkpoint: step, value, CI and where it sits against the threshold."""
        out = []
        for s, v, lo, hi in zip(self.steps, self.values, self.ci_low, self.ci_high):
            where = "above" if lo > self.threshold else "below" if hi < self.threshold else "straddles"
            mark = "  <- emergence" if s == self.step else ""
            out.append(f"  step {s:>9}: {v:.4f} [{lo:.4f}, {hi:.4f}]  {where}{mark}")
        return out

    def __str__(self) -> str:
        what = f"{self.metric} " if self.metric else ""
        if self.step is None:
            head = f"{what}never clears {self.threshold:g} for good within steps {self.steps[0]}..{self.steps[-1]}"
        else:
            low = "before the first checkpoint" if self.bracket[0] is None else f"after step {self.bracket[0]}"
            head = f"{what}clears {self.threshold:g} for good at step {self.step} (emerged {low}, by {self.step})"
        return "\n".join([head, *self.lines()])


def emergence(steps: Sequence[int], values: Sequence[float], ci_low: Sequence[float], ci_high: Sequence[float], *,
              threshold: float, metric: str | None = None) -> Emergence:
    """The emergence step of a curve over training steps, with its bracket (see the module's rule).

    Example:
        >>> from rli.emergence import emergence
        >>> e = emergence([0, 10, 20, 30], [0.5, 0.8, 0.93, 0.95], [0.4, 0.7, 0.91, 0.94], [0.6, 0.85, 0.95, 0.96],
        ...               threshold=0.9)
        >>> e.step, e.bracket
        (20, (10, 20))
    """
    try:
        s = np.asarray(steps)
        v, lo, hi = (np.asarray(a, dtype=np.float64) for a in (values, ci_low, ci_high))
    except (TypeError, ValueError):
        raise RliError("steps, values, ci_low and ci_high must be sequences of numbers (one per checkpoint)") from None
    if s.ndim != 1 or s.size == 0 or s.dtype.kind not in "iu":
        raise RliError(f"steps must be a non-empty 1-D sequence of integer training steps; got {s.dtype} {s.shape}")
    if not (v.shape == lo.shape == hi.shape == s.shape):
        raise RliError(f"steps, values, ci_low and ci_high must have one entry per checkpoint; got {s.size}, {v.size}, "
                       f"{lo.size}, {hi.size}")
    if np.unique(s).size != s.size:
        raise RliError("steps must be distinct (one record per checkpoint); filter the records to one layer and target")
    if not np.all(np.isfinite(np.concatenate([v, lo, hi]))):
        raise RliError("values and CIs must be finite; drop the checkpoints whose analysis failed")
    threshold = checks.real(threshold, "threshold")
    order = np.argsort(s, kind="stable")
    s, v, lo, hi = s[order], v[order], lo[order], hi[order]
    clear = lo > threshold
    stays = np.logical_and.accumulate(clear[::-1])[::-1]  # clear here and at every later step
    step = int(s[np.argmax(stays)]) if stays.any() else None
    below_idx = np.flatnonzero(hi < threshold)
    if step is not None:
        below_idx = below_idx[s[below_idx] < step]
    last_below = int(s[below_idx[-1]]) if below_idx.size else None
    first_clear = int(s[np.argmax(clear)]) if clear.any() else None
    return Emergence(float(threshold), step, (last_below, step), first_clear, tuple(int(x) for x in s),
                     tuple(float(x) for x in v), tuple(float(x) for x in lo), tuple(float(x) for x in hi), metric)


def dips(found: Emergence, after: int | None = None) -> tuple[int | None, list[int], list[int]]:
    """Stability of a curve from step ``after`` on (default: its first step whose CI lower bound clears).

    Returns ``(start, judged steps, dips)``; a dip is a judged step whose CI lower bound is not
    above the threshold. Stable = some steps judged and no dips.

    Example:
        >>> from rli.emergence import dips, emergence
        >>> e = emergence([0, 10, 20, 30], [0.5, 0.95, 0.88, 0.95], [0.4, 0.93, 0.85, 0.93], [0.6, 0.97, 0.91, 0.97],
        ...               threshold=0.9)
        >>> dips(e)
        (10, [10, 20, 30], [20])
    """
    start = found.first_clear if after is None else after
    window = [] if start is None else [i for i, s in enumerate(found.steps) if s >= start]
    return start, [found.steps[i] for i in window], [found.steps[i] for i in window if found.ci_low[i] <= found.threshold]


def curve(records: Iterable[Mapping[str, Any]], *, metric: str = "r2", layer: Any = None, target: Any = None,
          analysis: str | None = None, seed: Any = None) -> list[dict[str, Any]]:
    """The records of one curve over training steps (one per step), sorted by step; an error if ambiguous.

    Example:
        >>> from rli.emergence import curve
        >>> rows = [{"step": 20, "seed": 0, "layer": 5, "target": "u", "metric": "r2", "value": 0.9},
        ...         {"step": 10, "seed": 0, "layer": 5, "target": "u", "metric": "r2", "value": 0.5}]
        >>> [r["step"] for r in curve(rows, layer=5, target="u")]
        [10, 20]
    """
    rows = select(records, metric=metric, layer=layer, target=target, analysis=analysis, seed=seed)
    if not rows:
        raise RliError(f"no records with metric={metric!r}, layer={layer!r}, target={target!r}; check the names "
                       "against the sweep's table")
    by_step: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["step"] in by_step:
            other = by_step[r["step"]]
            differ = [k for k in ("seed", "layer", "target", "analysis") if other.get(k) != r.get(k)]
            raise RliError(f"several records at step {r['step']} (they differ in {', '.join(differ) or 'checkpoint'}); "
                           "narrow them with layer=, target=, analysis= or seed=, or aggregate seeds first")
        by_step[r["step"]] = r
    return [by_step[k] for k in sorted(by_step)]


def emergence_from_records(records: Iterable[Mapping[str, Any]], *, threshold: float, metric: str = "r2",
                           layer: Any = None, target: Any = None, analysis: str | None = None,
                           seed: Any = None) -> Emergence:
    """:func:`emergence` of one curve of a sweep's records (one layer, target and training seed).

    Example:
        >>> from rli.emergence import emergence_from_records
        >>> rows = [{"step": s, "seed": 0, "layer": 5, "target": "u", "metric": "r2", "value": v,
        ...          "ci_low": v - 0.02, "ci_high": v + 0.02} for s, v in [(0, 0.5), (10, 0.96), (20, 0.97)]]
        >>> emergence_from_records(rows, threshold=0.9, layer=5, target="u").step
        10
    """
    rows = curve(records, metric=metric, layer=layer, target=target, analysis=analysis, seed=seed)
    missing = [r["step"] for r in rows if r.get("ci_low") is None or r.get("ci_high") is None]
    if missing:
        raise RliError(f"records at steps {missing} have no CI (ci_low/ci_high); emergence is judged on CIs")
    return emergence([r["step"] for r in rows], [r["value"] for r in rows], [r["ci_low"] for r in rows],
                     [r["ci_high"] for r in rows], threshold=threshold, metric=metric)
