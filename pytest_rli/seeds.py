"""``over="seeds"``: an assertion judged on the interquartile mean of its metric over training seeds.

The decision rule (:func:`seed_rule`, calibrated in tests/test_over_seeds.py): the metric is
measured once per training seed; the estimate is the IQM of the per-seed values (rliable's
aggregate, :func:`rli.runstats.iqm_ci`) and its 95% interval is the **wider** of

* the stratified-bootstrap percentile interval of the IQM (rliable's), and
* the Tukey–McLaughlin t-interval of the same 25%-trimmed mean
  (:func:`scipy.stats.mstats.trimmed_mean_ci`).

An "at least ``min``" claim passes iff the interval's lower end is ≥ ``min`` (an "at most
``max``" claim iff its upper end is ≤ ``max``). The t-interval is there because a bootstrap
cannot reach beyond the seeds it resamples: with 3 seeds the bootstrap's lower end *is* the
smallest seed, so "every seed above ``min``" would pass one null experiment in eight; with the
t-interval beside it the false-pass rate stays at or below 5% from 3 seeds on.

:func:`run_over_seeds` measures a :mod:`rli.runs` spec on each seed's checkpoint through
:func:`rli.runs.sweep` (and its result store, so a second run is read back, not recomputed).
"""

from __future__ import annotations

import builtins
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mstats

from rli import checks
from rli.errors import RliError
from rli.runstats import iqm_ci

#: fewest training seeds an ``over="seeds"`` claim is judged on
MIN_SEEDS = 3
CONFIDENCE = 0.95


@dataclass(frozen=True)
class SeedVerdict:
    """The per-seed values of a metric, their IQM, its interval, and whether the claim holds.

    ``ci`` is the decision interval (the wider of ``bootstrap_ci`` and ``trimmed_ci``);
    ``values`` maps each seed to its value; ``checkpoints`` each seed to the file measured.
    """

    values: dict[Any, float]
    value: float
    ci: tuple[float, float]
    bootstrap_ci: tuple[float, float]
    trimmed_ci: tuple[float, float]
    passed: bool
    min: float | None = None
    max: float | None = None
    step: Any = None
    checkpoints: dict[Any, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def lines(self, metric: str = "metric") -> list[str]:
        """The evidence: every seed's value, then the IQM with both intervals."""
        at = {None: "", "last": " at each seed's last step"}.get(self.step, f" at step {self.step}")
        out = [f"per training seed{at} ({metric}):"]
        out += [f"  seed {seed}: {value:.4f}" + (f"  ({self.checkpoints[seed]})" if seed in self.checkpoints else "")
                for seed, value in self.values.items()]
        out.append(f"IQM over {len(self.values)} seeds {self.value:.4f}, 95% CI [{self.ci[0]:.4f}, {self.ci[1]:.4f}] "
                   f"(the wider of the stratified bootstrap [{self.bootstrap_ci[0]:.4f}, {self.bootstrap_ci[1]:.4f}] "
                   f"and the Tukey–McLaughlin t-interval [{self.trimmed_ci[0]:.4f}, {self.trimmed_ci[1]:.4f}])")
        if self.counts:
            out.append(f"units: {self.counts.get('computed', 0)} computed, {self.counts.get('cached', 0)} read from "
                       "the store")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able; seeds as strings)."""
        return {"values": {str(k): v for k, v in self.values.items()}, "value": self.value, "ci": list(self.ci),
                "bootstrap_ci": list(self.bootstrap_ci), "trimmed_ci": list(self.trimmed_ci), "passed": self.passed,
                "min": self.min, "max": self.max, "step": self.step,
                "checkpoints": {str(k): v for k, v in self.checkpoints.items()}, "counts": dict(self.counts)}


def seed_rule(values: Mapping[Any, float] | Sequence[float] | np.ndarray, *, min: float | None = None, max: float | None = None,
              n_resamples: int = 10_000, seed: int = 0) -> SeedVerdict:
    """Judge per-seed values: IQM, its interval (wider of bootstrap and t), pass iff low ≥ ``min`` / high ≤ ``max``.

    Example:
        >>> from pytest_rli.seeds import seed_rule
        >>> verdict = seed_rule({42: 0.978, 43: 0.980, 44: 0.982}, min=0.95, n_resamples=2000)
        >>> round(verdict.value, 3), verdict.passed, verdict.ci[0] < verdict.bootstrap_ci[0]
        (0.98, True, True)
    """
    if (min is None) == (max is None):
        raise RliError("seed_rule needs exactly one of min= (an 'at least' claim) or max= (an 'at most' claim)")
    bound = checks.real(min if min is not None else max, "min" if min is not None else "max")
    per_seed = dict(values) if isinstance(values, Mapping) else dict(enumerate(values))
    arr = np.asarray(list(per_seed.values()), dtype=np.float64)
    if arr.ndim != 1 or arr.size < MIN_SEEDS:
        raise RliError(f"over='seeds' needs at least {MIN_SEEDS} training seeds (the IQM's CI is over seeds); "
                       f"got {arr.size}: add checkpoints of more seeds")
    if not np.all(np.isfinite(arr)):
        raise RliError(f"the per-seed values must be finite; got {dict(zip(per_seed, arr.tolist()))}")
    boot = iqm_ci(arr, confidence=CONFIDENCE, n_resamples=n_resamples, seed=seed)
    if np.ptp(arr) == 0:
        trimmed = (float(arr[0]), float(arr[0]))
    else:
        low, high = mstats.trimmed_mean_ci(arr, limits=(0.25, 0.25), alpha=1 - CONFIDENCE)
        trimmed = (float(low), float(high))
    ci = (builtins.min(boot.ci[0], trimmed[0]), builtins.max(boot.ci[1], trimmed[1]))
    passed = ci[0] >= bound if min is not None else ci[1] <= bound
    return SeedVerdict(values={k: float(v) for k, v in zip(per_seed, arr)}, value=float(boot.value), ci=ci,
                       bootstrap_ci=(float(boot.ci[0]), float(boot.ci[1])), trimmed_ci=trimmed, passed=bool(passed),
                       min=None if min is None else bound, max=None if max is None else bound)


def check_over(over: Any, assertion: str) -> bool:
    """Whether ``over`` asks for the seed-aware mode (``"seeds"``); anything but ``None`` / ``"seeds"`` is an error."""
    if over is None:
        return False
    if over != "seeds":
        raise RliError(f"{assertion}: over must be None (this checkpoint) or 'seeds' (the IQM over training seeds), "
                       f"not {over!r}")
    return True


def _bound_step(assertion: str, found: list[Any], policy: Any) -> Any:
    """The training step of ``policy`` when it is one of ``found`` (by path), ``"last"`` when there is no policy."""
    if policy is None:
        return "last"
    source = Path(str(getattr(policy, "source", "") or "")).resolve()
    for checkpoint in found:
        if Path(checkpoint.path).resolve() == source:
            if checkpoint.step is None:
                raise RliError(f"{assertion}: the policy {checkpoint.path} has no training step; pass step=")
            return checkpoint.step
    raise RliError(f"{assertion}: over='seeds' measures the checkpoints of each training seed, and the policy "
                   f"({getattr(policy, 'source', '') or 'in memory'}) is not one of them, so its step cannot choose "
                   "theirs; pass step= (a training step or 'last') or policy=None")


def seed_checkpoints(assertion: str, checkpoints: Any, step: Any, policy: Any = None) -> tuple[list[Any], Any]:
    """One checkpoint per training seed among ``checkpoints``, at ``step``.

    ``step=None``: the step of ``policy`` when it is one of the checkpoints (the bound one), each
    seed's last step when ``policy`` is None; ``"last"``: each seed's latest checkpoint.
    """
    from rli.runs.checkpoints import discover

    if checkpoints is None:
        raise RliError(f"{assertion}: over='seeds' needs the training seeds' checkpoints: pass checkpoints= (a glob, "
                       "a run directory or a list) or set the rli_checkpoints ini key")
    if not (step is None or step == "last" or (isinstance(step, (int, np.integer)) and not isinstance(step, bool))):
        raise RliError(f"{assertion}: step must be a training step (an integer), 'last' or None, not {step!r}")
    found = discover(checkpoints)
    if step is None:
        step = _bound_step(assertion, found, policy)
    unseeded = [c.path for c in found if c.seed is None]
    if unseeded:
        raise RliError(f"{assertion}: no training seed known for {unseeded[0]} (and {len(unseeded) - 1} more); name "
                       "the directory seed_<N> or give the card a \"seed\"")
    by_seed: dict[int, list[Any]] = {}
    for checkpoint in found:
        assert checkpoint.seed is not None
        by_seed.setdefault(checkpoint.seed, []).append(checkpoint)
    chosen = []
    for seed_id in sorted(by_seed):
        runs = by_seed[seed_id]
        if step == "last":
            stepped = [c for c in runs if c.step is not None]
            chosen.append(builtins.max(stepped, key=lambda c: c.step) if stepped else runs[-1])
        else:
            at = [c for c in runs if c.step == int(step)]
            if len(at) > 1:
                raise RliError(f"{assertion}: seed {seed_id} has {len(at)} checkpoints at step {step}; narrow "
                               "checkpoints= to one run per seed")
            chosen.extend(at)
    if len(chosen) < MIN_SEEDS:
        where = "each seed's last step" if step == "last" else f"step {step}"
        raise RliError(f"{assertion}: over='seeds' needs at least {MIN_SEEDS} training seeds, found {len(chosen)} at "
                       f"{where} ({', '.join(str(c.seed) for c in chosen) or 'none'}) among {len(found)} checkpoints "
                       f"of {checkpoints!r}; add checkpoints of more seeds or choose another step=")
    return chosen, step


def run_over_seeds(assertion: str, spec: Any, metric: str, *, checkpoints: Any, step: Any = None, policy: Any = None,
                   store: Any = None, min: float | None = None, max: float | None = None) -> SeedVerdict:
    """Measure ``spec`` on one checkpoint per training seed (via :func:`rli.runs.sweep`) and judge ``metric``.

    Returns the :class:`SeedVerdict`; every unit that fails is an :class:`RliError` naming its checkpoint.
    """
    from rli.runs.sweep import sweep

    chosen, step = seed_checkpoints(assertion, checkpoints, step, policy)
    table = sweep(chosen, spec, store=store, progress=False)
    if table.failures:
        raise RliError(f"{assertion}: over='seeds': {len(table.failures)} seed(s) failed; first: {table.failures[0]}")
    values: dict[Any, float] = {}
    paths: dict[Any, str] = {}
    for row in table.filter(metric=metric):
        if row["seed"] in values:
            raise RliError(f"{assertion}: several {metric!r} rows for seed {row['seed']}; this is a bug in the spec")
        values[row["seed"]], paths[row["seed"]] = float(row["value"]), str(row["checkpoint"])
    if len(values) != len(chosen):
        raise RliError(f"{assertion}: the analysis gave {metric!r} for {len(values)} of {len(chosen)} seeds")
    verdict = seed_rule(values, min=min, max=max)
    counts = {"computed": table.counts.computed, "cached": table.counts.cached}
    return replace(verdict, step=step, checkpoints=paths, counts=counts)


def obs_spec(assertion: str, obs: Any, target: Any, store: Any) -> tuple[Any, str | None]:
    """``obs`` and ``target`` as a serialisable :class:`rli.runs.Obs` and a label name, for :mod:`rli.runs` specs.

    An :class:`rli.runs.Obs` or an ``.npz`` path is used as it is (each seed measured on it, or on
    its own rollouts for ``Obs.rollouts``). Observations in memory (an ``ObsSet`` or an array) are
    saved, with an array target as the label ``"target"`` (a ``(name, array)`` target under its
    name), to ``<store>/observations/<fingerprint>.npz`` (the system's temporary directory without
    a store): the same observations give the same file, so a second run is read from the store.
    """
    from rli.observations import ObsSet
    from rli.runs.specs import Obs
    from rli.targets import is_named_array

    if obs is None:
        raise RliError(f"{assertion}: over='seeds' needs observations: pass obs= (an ObsSet, a .npz path or an "
                       "rli.runs.Obs)")
    if isinstance(target, str) or target is None:
        name, values = target, None
    elif is_named_array(target):
        name, values = str(target[0]), target[1]
    else:
        name, values = "target", target
    if isinstance(obs, Obs) or isinstance(obs, (str, Path)):
        if values is not None:
            raise RliError(f"{assertion}: an array target needs observations in memory (an ObsSet); with "
                           f"{obs!s} name a label of theirs: target='upwash'")
        return (obs if isinstance(obs, Obs) else Obs.file(obs)), name
    found = obs if isinstance(obs, ObsSet) else ObsSet(obs)
    if values is not None and name is not None:
        found = found.with_labels(**{name: np.asarray(values)})
    folder = Path(str(store)) if store is not None else Path(tempfile.gettempdir()) / "rli-over-seeds"
    folder = folder / "observations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{found.fingerprint}.npz"
    if not path.is_file():
        partial = path.with_suffix(f".{os.getpid()}.{id(found)}.tmp.npz")  # then an atomic rename
        found.save(partial)
        partial.replace(path)
    return Obs.file(path), name
