"""Ablations along directions estimated from data, with intervals that include the estimation.

A direction fitted on observations (a principal direction, a probe's weights, a
steering vector) is itself an estimate: fitted on other rollouts it comes out
different, and so does the cost of removing it. The interval of :func:`rli.compare`
is for one fixed direction: it covers the noise of the evaluation episodes only.
:func:`compare_refit` refits the direction on resampled episodes of the fitting
observations (a bootstrap over episodes) or on fresh observations, evaluates every
refit on the same evaluation seeds (none of which the fit saw), and combines the
two sources of variation into one interval (:func:`refit_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from rli import checks
from rli.comparison import Comparison, compare
from rli.errors import RliError
from rli.observations import ObsSet
from rli.policy import Policy
from rli.rollout import EnvSpec, evaluate

__all__ = ["RefitComparison", "compare_refit", "refit_interval"]


def refit_interval(drops: Any, *, groups: int | None = None,
                   confidence: float = 0.95) -> tuple[float, tuple[float, float], float]:
    """Mean and CI of paired drops measured for R refitted directions on the same J seeds → ``(mean, ci, df)``.

    ``drops[r, j]`` is the drop in return (baseline − treated) of seed ``j`` with the
    direction of refit ``r`` removed. Model: ``d[r, j] = θ + a_r + s_j + e_rj`` with
    ``a_r`` the direction's estimation (its spread over refits is the spread of the
    estimate, by the bootstrap principle, or directly with fresh fits), ``s_j`` the
    seed and ``e`` their interaction. The direction's error does not average out over
    refits (all refits come from the one fitting set), so the variance of the mean is
    ``var(row means) + var(column means) / J``: the direction term in full, the seed term
    over J (it counts the interaction once more than needed: conservative). When the
    refits are a bootstrap over ``groups`` episodes, the direction term is scaled by
    ``groups / (groups − 1)`` (a bootstrap over G groups understates a variance by
    (G−1)/G). The interval is Student-t with Satterthwaite's degrees of freedom ``df``.

    Example:
        >>> import numpy as np, rli
        >>> rng = np.random.default_rng(0)
        >>> drops = 10 + rng.normal(0, 2, size=(20, 1)) + rng.normal(0, 1, size=(1, 10))
        >>> mean, (low, high), df = rli.direction_uncertainty.refit_interval(drops)
        >>> bool(low < 10 < high), round(high - low, 1)  # about 2 × 1.96 × 2: the direction's spread in full
        (True, 7.4)
    """
    try:
        arr = np.asarray(drops, dtype=np.float64)
    except (TypeError, ValueError):
        raise RliError("drops must be a numeric array (refits × seeds)") from None
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise RliError(f"drops must be a 2-D array with at least 2 refits and 2 seeds, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise RliError("drops contain NaN or infinite values; every refit and seed needs a finite return")
    if not 0.0 < checks.real(confidence, "confidence") < 1.0:
        raise RliError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    if groups is not None:
        groups = checks.count(groups, "groups", minimum=2, hint=" (a bootstrap over episodes needs 2 or more)")
    refits, seeds = arr.shape
    v_dir = float(arr.mean(axis=1).var(ddof=1)) * (groups / (groups - 1) if groups else 1.0)
    v_seed = float(arr.mean(axis=0).var(ddof=1)) / seeds
    mean = float(arr.mean())
    total = v_dir + v_seed
    if total == 0.0:
        return mean, (mean, mean), math.inf
    df = total**2 / (v_dir**2 / (refits - 1) + v_seed**2 / (seeds - 1))
    half = float(_st.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(total)
    return mean, (mean - half, mean + half), float(df)


@dataclass(frozen=True)
class RefitComparison:
    """Outcome of :func:`compare_refit`.

    ``fixed`` is :func:`rli.compare` for the direction fitted once on all the fitting
    observations: its ``ci`` is for *that one fixed direction*. ``drops[r, j]`` is the
    paired drop of evaluation seed ``j`` with refit ``r``'s direction removed; ``drop``
    and ``ci`` (:func:`refit_interval`) cover both the direction's estimation and the
    episode noise; ``relative_drop`` / ``relative_ci`` are those over ``|baseline mean|``.
    ``resample`` says how refits were fitted (``"bootstrap over N episodes"`` or
    ``"fresh observations"``); ``descriptions`` what each refit's intervention did;
    ``fit_rows[r]`` the rows of the fitting observations refit ``r`` was fitted on (in
    draw order; ``None`` for fresh observations), so any refit can be rebuilt.
    """

    fixed: Comparison
    drops: np.ndarray
    drop: float
    ci: tuple[float, float]
    df: float
    baseline_mean: float
    resample: str
    groups: int | None
    confidence: float
    descriptions: tuple[str, ...]
    fit_rows: tuple[np.ndarray, ...] | None = None

    @property
    def relative_drop(self) -> float | None:
        """Mean drop over the refits, over |mean baseline return| (``None`` when that mean is 0)."""
        return None if self.baseline_mean == 0 else self.drop / abs(self.baseline_mean)

    @property
    def relative_ci(self) -> tuple[float, float] | None:
        """The interval :attr:`ci` over |mean baseline return| (``None`` when that mean is 0)."""
        if self.baseline_mean == 0:
            return None
        return self.ci[0] / abs(self.baseline_mean), self.ci[1] / abs(self.baseline_mean)

    @property
    def refits(self) -> int:
        """How many times the direction was refitted."""
        return int(self.drops.shape[0])

    @property
    def seeds(self) -> np.ndarray:
        """The evaluation seeds (shared by the baseline, the fixed direction and every refit)."""
        return self.fixed.baseline.seeds

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"drop": self.drop, "ci": list(self.ci), "df": self.df, "relative_drop": self.relative_drop,
                "relative_ci": None if self.relative_ci is None else list(self.relative_ci),
                "baseline_mean": self.baseline_mean, "refits": self.refits, "resample": self.resample,
                "groups": self.groups, "confidence": self.confidence, "seeds": self.seeds.tolist(),
                "drops": self.drops.tolist(), "descriptions": list(self.descriptions),
                "fixed_direction": self.fixed.to_dict()}

    def __str__(self) -> str:
        seeds = self.seeds
        pct = self.confidence
        head = (f"{self.fixed.intervention or 'intervention'} on {self.fixed.baseline.env}, seeds "
                f"{seeds[0]}..{seeds[-1]}, baseline return {self.baseline_mean:.4g}")
        fixed = self.fixed
        rel = fixed.relative_ci
        one = (f"  one fixed direction (fitted on all the fitting observations): drop {fixed.drop:.4g}, "
               f"{pct:.0%} CI [{fixed.ci[0]:.4g}, {fixed.ci[1]:.4g}]"
               + (f", relative {fixed.relative_drop:+.1%} [{rel[0]:+.1%}, {rel[1]:+.1%}]" if rel else "")
               + " (episode noise only)")
        rel = self.relative_ci
        refit = (f"  refitted {self.refits} times ({self.resample}): drop {self.drop:.4g}, {pct:.0%} CI "
                 f"[{self.ci[0]:.4g}, {self.ci[1]:.4g}]"
                 + (f", relative {self.relative_drop:+.1%} [{rel[0]:+.1%}, {rel[1]:+.1%}]" if rel else "")
                 + " (direction estimation and episode noise)")
        return "\n".join([head, one, refit])


def _group_rows(obs: Any, groups: Any) -> tuple[list[np.ndarray], int]:
    """The row indices of each group of ``obs`` and how many groups there are."""
    if isinstance(groups, str):
        if not isinstance(obs, ObsSet) or groups not in obs.labels:
            have = sorted(obs.labels) if isinstance(obs, ObsSet) else "none (a plain array)"
            raise RliError(f"groups={groups!r} names no label of obs (labels: {have}); pass groups= as an array of "
                           "one group id per observation, or observations from rli.ObsSet.from_rollouts (which "
                           "records 'episode')")
        labels = np.asarray(obs.labels[groups])
    else:
        labels = np.asarray(groups)
        if labels.ndim != 1 or len(labels) != len(obs):
            raise RliError(f"groups= must give one group id per observation ({len(obs)}), got shape {labels.shape}")
    _, inverse = np.unique(labels, return_inverse=True)
    rows = [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)]
    if len(rows) < 2:
        raise RliError(f"the fitting observations hold {len(rows)} group (episode); a bootstrap over episodes needs "
                       "at least 2 (collect more episodes, or pass fresh observations as a callable obs=)")
    return rows, len(rows)


def compare_refit(
    policy: Policy,
    env: EnvSpec,
    build: Callable[[Any], Any],
    obs: Any,
    episodes: int,
    seed: int,
    *,
    refits: int = 20,
    groups: Any = "episode",
    refit_seed: int = 0,
    confidence: float = 0.95,
    **evaluate_kwargs: Any,
) -> RefitComparison:
    """Paired comparison of an ablation along an estimated direction, with the direction's estimation in the CI.

    ``build(fit_obs)`` returns the intervention with its direction fitted on
    ``fit_obs`` (e.g. ``lambda o: rli.ablate(policy, 5, "pc1", obs=o)``). It is called
    once on ``obs`` (the fixed-direction comparison, :attr:`RefitComparison.fixed`) and
    once per refit on a bootstrap resample of ``obs``'s groups (``groups=``: a label
    name, ``"episode"`` by default as :meth:`rli.ObsSet.from_rollouts` records it, or an
    array of group ids): whole episodes drawn with replacement, never single rows, since
    rows of one episode are correlated. ``obs`` may instead be a callable
    ``refit_index -> observations`` giving fresh observations per refit (e.g. new
    rollouts); ``obs(-1)`` then serves the fixed direction. Every refit is evaluated on
    the same ``episodes`` seeds ``seed, seed + 1, ...``, paired with one baseline; keep
    them apart from the seeds the fitting rollouts used. Costs ``(refits + 2) × episodes``
    episodes. ``evaluate_kwargs`` go to :func:`rli.evaluate`.

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
        >>> visited = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=200, seed=100)
        >>> result = rli.compare_refit(policy, "CartPole-v1", lambda o: rli.ablate(policy, 1, "pc1", obs=o),
        ...                            visited, episodes=4, seed=0, refits=3)
        >>> result.drops.shape, result.fixed.baseline.seeds.tolist()
        ((3, 4), [0, 1, 2, 3])
    """
    checks.policy(policy)
    if not callable(build):
        raise RliError(f"build= must be a function fit_obs -> intervention (e.g. lambda o: rli.ablate(policy, 5, "
                       f"'pc1', obs=o)), not {type(build).__name__}")
    refits = checks.count(refits, "refits", minimum=2, hint=" (2 or more refits give a spread)")
    episodes = checks.count(episodes, "episodes", minimum=2, hint=" (a paired comparison needs 2 or more)")
    seed, refit_seed = checks.seed(seed), checks.seed(refit_seed, "refit_seed")
    if not 0.0 < checks.real(confidence, "confidence") < 1.0:
        raise RliError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    fresh = callable(obs) and not isinstance(obs, (ObsSet, np.ndarray))
    if fresh:
        fit_sets: Callable[[int], Any] = obs
        n_groups, resample, draws = None, "fresh observations", None
    else:
        if obs is None:
            raise RliError("obs= must be the observations the direction is fitted on (or a callable "
                           "refit_index -> observations for fresh ones)")
        rows, n_groups = _group_rows(obs, groups)
        rng = np.random.default_rng([refit_seed, n_groups])
        draws = [np.concatenate([rows[g] for g in rng.integers(0, n_groups, n_groups)]) for _ in range(refits)]

        def fit_sets(r: int) -> Any:
            return obs if r < 0 else obs[draws[r]]

        resample = f"bootstrap over {n_groups} {groups if isinstance(groups, str) else 'group'}s"
    first = build(fit_sets(-1))  # a bad build raises here, before any episode runs
    baseline = evaluate(policy, env, episodes, seed, **evaluate_kwargs)
    fixed = compare(policy, env, first, episodes, seed, baseline=baseline, confidence=confidence, **evaluate_kwargs)
    drops = np.empty((refits, episodes))
    descriptions = []
    for r in range(refits):
        intervention = build(fit_sets(r))
        treated = evaluate(policy, env, episodes, seed, intervention, **evaluate_kwargs)
        drops[r] = baseline.returns - treated.returns
        descriptions.append(treated.intervention or repr(intervention))
    mean, ci, df = refit_interval(drops, groups=n_groups, confidence=confidence)
    return RefitComparison(fixed=fixed, drops=drops, drop=mean, ci=ci, df=df, baseline_mean=baseline.mean,
                           resample=resample, groups=n_groups, confidence=confidence,
                           descriptions=tuple(descriptions), fit_rows=None if draws is None else tuple(draws))
