"""Is a metric better, the same or worse than a stored one? Pure functions, no pytest, no torch.

Both sides usually carry a 95% confidence interval (probes, ablations, CKA...). A
metric is **regressed** when the two intervals *separate* in the bad direction (the
current interval lies wholly on the worse side of the stored one), **improved** when
they separate the other way, and **unchanged** when they overlap. Non-overlap of two
95% intervals is a conservative test: for two independent estimates with equal
standard errors it fires at ``|Δ| > 1.96·√2·SE``, a two-sided rate of about 0.56%
(0.28% per direction) when nothing changed (measured on episode-correlated data in
``tests/test_baseline_intervals.py``). When either side has no usable interval the
fixed ``tolerance`` decides instead, and the verdict says so.

Example:
    >>> classify(0.80, (0.78, 0.82), 0.95, (0.93, 0.97), higher_is_better=True, tolerance=0.02).change
    'regressed'
    >>> classify(0.94, (0.90, 0.98), 0.95, (0.93, 0.97), higher_is_better=True, tolerance=0.02).change
    'unchanged'
    >>> classify(0.90, None, 0.95, None, higher_is_better=True, tolerance=0.02).rule
    'tolerance'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CHANGES = ("improved", "unchanged", "regressed")


@dataclass(frozen=True)
class Verdict:
    """How a metric compares with its stored value.

    ``change`` is one of :data:`CHANGES`; ``rule`` is ``"intervals"`` or
    ``"tolerance"``; ``why`` is one line a reviewer can read.
    """

    change: str
    rule: str
    why: str


def usable_interval(value: float, ci: Sequence[float] | None) -> tuple[float, float] | None:
    """``ci`` as a ``(low, high)`` pair when it describes ``value`` (finite, ordered, containing it), else None.

    A stored interval that does not contain its own value was edited by hand (or is not
    an interval of that number): the tolerance judges it instead.

    Example:
        >>> usable_interval(0.5, [0.4, 0.6]), usable_interval(0.9, [0.4, 0.6]), usable_interval(0.5, None)
        ((0.4, 0.6), None, None)
    """
    if ci is None or len(ci) != 2:
        return None
    low, high = float(ci[0]), float(ci[1])
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(value)) or low > high:
        return None
    slack = 1e-9 * max(1.0, abs(low), abs(high))
    if not low - slack <= value <= high + slack:
        return None
    return low, high


def interval_change(current: tuple[float, float], stored: tuple[float, float], higher_is_better: bool) -> str:
    """``"regressed"`` / ``"improved"`` when the intervals separate (in the bad / good direction), else
    ``"unchanged"``; touching intervals overlap.

    Example:
        >>> interval_change((0.1, 0.2), (0.3, 0.4), higher_is_better=True)
        'regressed'
        >>> interval_change((0.1, 0.2), (0.3, 0.4), higher_is_better=False)
        'improved'
    """
    if current[1] < stored[0]:
        return "regressed" if higher_is_better else "improved"
    if current[0] > stored[1]:
        return "improved" if higher_is_better else "regressed"
    return "unchanged"


def tolerance_change(value: float, stored: float, higher_is_better: bool, tolerance: float) -> str:
    """The fallback rule: a move of more than ``tolerance`` (absolute) in either direction.

    Example:
        >>> tolerance_change(0.90, 0.95, True, 0.02), tolerance_change(0.94, 0.95, True, 0.02)
        ('regressed', 'unchanged')
    """
    delta = value - stored if higher_is_better else stored - value
    if delta < -tolerance:
        return "regressed"
    if delta > tolerance:
        return "improved"
    return "unchanged"


def _text(value: float, ci: tuple[float, float] | None) -> str:
    return f"{value:.4g}" if ci is None else f"{value:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"


def classify(value: float, ci: Sequence[float] | None, stored: float, stored_ci: Sequence[float] | None, *,
             higher_is_better: bool, tolerance: float) -> Verdict:
    """Compare the current ``value`` (95% CI ``ci``) with the ``stored`` one (``stored_ci``).

    The intervals decide when both are usable (:func:`usable_interval`); otherwise the
    absolute ``tolerance`` does, and ``why`` names the side that lacked an interval.
    """
    current = usable_interval(value, ci)
    before = usable_interval(stored, stored_ci)
    direction = "higher" if higher_is_better else "lower"
    if current is not None and before is not None:
        change = interval_change(current, before, higher_is_better)
        relation = "overlap" if change == "unchanged" else "do not overlap"
        return Verdict(change, "intervals", f"baseline {_text(stored, before)}, now {_text(value, current)}: "
                                            f"the 95% CIs {relation} ({direction} is better)")
    if before is None and stored_ci is not None:
        missing = "the stored CI does not describe the stored value"
    elif before is None:
        missing = "the baseline has no CI (older baseline file?)"
    else:
        missing = "this measurement has no CI"
    change = tolerance_change(value, stored, higher_is_better, tolerance)
    return Verdict(change, "tolerance", f"baseline {stored:.4g}, now {value:.4g}: {missing}, so the tolerance "
                                        f"{tolerance:.4g} decides ({direction} is better)")


def classify_stored(current: dict[str, Any], stored: dict[str, Any], tolerance: float) -> Verdict:
    """:func:`classify` for two stored metric dicts (``value``, ``ci``, ``higher_is_better``), as in
    baseline and run-history files; the current metric's direction wins.

    Example:
        >>> classify_stored({"value": 1.0, "ci": [0.9, 1.1], "higher_is_better": False},
        ...                 {"value": 0.5, "ci": [0.4, 0.6]}, 0.02).change
        'regressed'
    """
    higher = current.get("higher_is_better", stored.get("higher_is_better", True))
    return classify(float(current["value"]), current.get("ci"), float(stored["value"]), stored.get("ci"),
                    higher_is_better=bool(higher), tolerance=tolerance)
