"""Sweeps of paired comparisons: ablation curves and the minimal sufficient PCA subspace."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rli import checks, defaults, stats
from rli.capture import capture
from rli.comparison import Comparison, compare
from rli.errors import RliError
from rli.interventions import ablate, keep_subspace
from rli.policy import LayerSpec, Policy
from rli.recurrent import RecurrentState
from rli.rollout import EnvSpec, EvalResult, evaluate
from rli.stats import Equivalence
from rli.subspace import fit_pca


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


@dataclass(frozen=True)
class AblationCurve:
    """Drop in return as a function of ``k`` (top-k principal directions removed) or of ``alpha``.

    The points are one family of paired tests (one shared baseline, the same seeds):
    ``significant`` marks the points whose ``correction``-adjusted p-value (Holm by
    default) is below ``alpha``, so that the chance of calling *any* point of a curve
    with no effect significant is at most ``alpha``. ``Comparison.significant`` of a
    single point is uncorrected. The directions are fitted once on the given
    observations and held fixed: the intervals cover episode noise for these
    directions, not the estimation of the directions.
    """

    layer: str
    parameter: str
    values: tuple[float, ...]
    comparisons: tuple[Comparison, ...]
    correction: str = "holm"
    alpha: float = 0.05

    @property
    def baseline(self) -> EvalResult:
        """The shared no-intervention evaluation."""
        return self.comparisons[0].baseline

    @property
    def relative_drops(self) -> tuple[float | None, ...]:
        """Relative drop in mean return at each point."""
        return tuple(c.relative_drop for c in self.comparisons)

    @property
    def p_values(self) -> tuple[float, ...]:
        """Uncorrected two-sided paired t-test p-value of each point."""
        return tuple(c.p_value for c in self.comparisons)

    @property
    def adjusted_p_values(self) -> tuple[float, ...]:
        """The p-values adjusted for the curve's multiplicity with ``correction``."""
        return tuple(float(p) for p in stats.adjust(self.p_values, self.correction))

    @property
    def significant(self) -> tuple[bool, ...]:
        """Per point: adjusted p-value below ``alpha`` (family-wise error ≤ ``alpha`` over the curve)."""
        return tuple(p < self.alpha for p in self.adjusted_p_values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"layer": self.layer, "parameter": self.parameter, "values": list(self.values),
                "correction": self.correction, "alpha": self.alpha,
                "adjusted_p_values": list(self.adjusted_p_values), "significant": list(self.significant),
                "points": [c.to_dict() for c in self.comparisons]}

    def __str__(self) -> str:
        adjusted = "p" if self.correction == "none" else f"p {self.correction}"
        lines = [f"ablation curve at {self.layer} over {self.parameter} "
                 f"({len(self.baseline.returns)} paired episodes per point, baseline return {self.baseline.mean:.4g}; "
                 f"significance: {self.correction} correction over {len(self.values)} points, alpha {self.alpha:g})",
                 f"{self.parameter:>8}  {'return':>10}  {'drop':>9}  {'95% CI of relative drop':>24}  {'p':>8}  "
                 f"{adjusted:>10}  significant"]
        for value, c, p, sig in zip(self.values, self.comparisons, self.adjusted_p_values, self.significant):
            ci = "—" if c.relative_ci is None else f"[{_pct(c.relative_ci[0])}, {_pct(c.relative_ci[1])}]"
            lines.append(f"{value:>8g}  {c.treated.mean:>10.4g}  {_pct(c.relative_drop):>9}  {ci:>24}  "
                         f"{c.p_value:>8.3g}  {p:>10.3g}  {'yes' if sig else 'no'}")
        lines.append("(the directions were fitted once on the given observations; the CIs cover episode noise for "
                     "these fixed directions, not their estimation)")
        return "\n".join(lines)


def ablation_curve(
    policy: Policy,
    env: EnvSpec,
    layer: LayerSpec,
    obs: Any,
    *,
    ks: Sequence[int] | None = None,
    alphas: Sequence[float] | None = None,
    direction: Any = "pc1",
    episodes: int = defaults.SWEEP_EPISODES,
    seed: int = 0,
    correction: str = "holm",
    alpha: float = 0.05,
    recurrent_state: RecurrentState | None = None,
    **evaluate_kwargs: Any,
) -> AblationCurve:
    """Paired drop in return as more principal directions are removed (``ks``) or as ``alpha`` varies.

    With ``ks``, point *k* zeroes principal directions 1..k of ``layer``'s activations
    on ``obs``. With ``alphas``, ``direction`` (default ``"pc1"``) is scaled by each
    alpha (0 removes it, 1 leaves it, −1 reflects it). One baseline evaluation is
    shared by all points; every point uses the same seeds. ``curve.significant``
    corrects the points' paired t-tests for multiplicity (``correction``: ``"holm"``,
    the default, ``"bonferroni"`` or ``"none"``) at level ``alpha``. A recurrent policy's
    activations on ``obs`` run from the hidden states ``recurrent_state`` chooses, as
    in :func:`rli.capture` (by default those recorded by :meth:`rli.ObsSet.from_rollouts`).

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
        >>> obs = rli.ObsSet.sample(policy, 500, seed=0)
        >>> curve = rli.ablation_curve(policy, "CartPole-v1", 1, obs, ks=[1, 2], episodes=4)
        >>> curve.values, len(curve.comparisons)
        ((1, 2), 2)
        >>> curve.correction, len(curve.significant)
        ('holm', 2)
    """
    correction = stats.check_correction(correction)
    alpha = stats.check_alpha(alpha)
    if (ks is None) == (alphas is None):
        raise RliError("give exactly one of ks= (numbers of principal directions to remove) or alphas=")
    name = checks.policy(policy).layer(layer).name
    values: tuple[float, ...]
    if ks is not None:
        if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not all(
                isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in ks):
            raise RliError(f"ks must be a list of positive numbers of directions, got {ks!r}")
        values = tuple(int(k) for k in ks)
        if not values or min(values) < 1:
            raise RliError(f"ks must be positive numbers of directions, got {list(ks)}")
        interventions = [ablate(policy, layer, f"pc1-{k}" if k > 1 else "pc1", obs=obs, recurrent_state=recurrent_state)
                         for k in values]
        parameter = "k"
    else:
        if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence):
            raise RliError(f"alphas must be a list of numbers, got {alphas!r}")
        values = tuple(checks.real(a, "every alpha") for a in alphas)
        if not values:
            raise RliError("alphas is empty")
        interventions = [ablate(policy, layer, direction, alpha=a, obs=obs, recurrent_state=recurrent_state)
                         for a in values]
        parameter = "alpha"
    baseline = evaluate(policy, env, episodes, seed, **evaluate_kwargs)
    comparisons = tuple(compare(policy, env, item, episodes, seed, baseline=baseline, **evaluate_kwargs)
                        for item in interventions)
    return AblationCurve(layer=name, parameter=parameter, values=values, comparisons=comparisons,
                         correction=correction, alpha=alpha)


@dataclass(frozen=True)
class SubspaceStep:
    """One step of the search: the principal directions kept so far, the paired comparison they gave on the
    selection seeds, and its TOST against the tolerance (``equivalence``, on the selection seeds too)."""

    kept: tuple[int, ...]
    comparison: Comparison
    equivalence: Equivalence | None = None


@dataclass(frozen=True)
class Selection:
    """Outcome of :func:`select_and_confirm`: the walk on the selection seeds and the one confirmatory test.

    ``path`` holds the kept directions after each step and ``screens`` the TOST of each
    step on the selection seeds; ``chosen`` is the first step whose screen passed
    (``None``: none did, nothing was confirmed); ``confirmation`` is the TOST of
    ``chosen`` on the fresh confirmation seeds, and ``found`` whether it passed.
    """

    path: tuple[tuple[int, ...], ...]
    screens: tuple[Equivalence, ...]
    chosen: tuple[int, ...] | None
    confirmation: Equivalence | None
    found: bool


def select_and_confirm(
    trial: Callable[[tuple[int, ...], str], tuple[Any, Any]],
    pool: int,
    *,
    tolerance: float,
    method: str = "greedy",
    alpha: float = 0.05,
) -> Selection:
    """The decision rule of :func:`minimal_subspace`: walk on selection seeds, confirm once on fresh seeds.

    ``trial(kept, phase)`` returns the paired ``(baseline_returns, treated_returns)``
    of keeping the directions ``kept`` (1-based, out of ``pool``), on the selection
    seeds when ``phase == "selection"`` and on the confirmation seeds when
    ``phase == "confirmation"``. Each step adds one direction: the one with the
    highest mean treated return among all remaining (``"greedy"``) or the next by
    explained variance (``"ordered"``). The walk stops at the first subspace whose
    TOST on the selection seeds says "within ±tolerance"; that single subspace is then
    tested again, by TOST at level ``alpha``, on the confirmation seeds, which played
    no part in choosing it. So a "sufficient" verdict is wrong with probability at
    most ``alpha`` however many candidates were screened.

    Example:
        >>> import numpy as np, rli
        >>> base = np.linspace(90.0, 110.0, 12)
        >>> def trial(kept, phase):  # direction 2 carries everything: keeping it preserves return
        ...     return base, (base if 2 in kept else 0.5 * base)
        >>> found = rli.sweeps.select_and_confirm(trial, 3, tolerance=0.05)
        >>> found.chosen, found.found
        ((2,), True)
    """
    if not isinstance(method, str) or method not in ("greedy", "ordered"):
        raise RliError(f"method must be 'greedy' or 'ordered', not {method!r}")
    checks.count(pool, "pool")
    alpha = stats.check_alpha(alpha)
    kept: list[int] = []
    path: list[tuple[int, ...]] = []
    screens: list[stats.Equivalence] = []
    chosen = None
    while len(kept) < pool and chosen is None:
        remaining = [k for k in range(1, pool + 1) if k not in kept]
        options = remaining if method == "greedy" else remaining[:1]
        results = {k: trial((*kept, k), "selection") for k in options}
        best = max(options, key=lambda k: (float(np.mean(results[k][1])), -k))
        kept.append(best)
        path.append(tuple(kept))
        screens.append(stats.tost(*results[best], tolerance, alpha=alpha))
        if screens[-1].equivalent:
            chosen = tuple(kept)
    confirmation = None if chosen is None else stats.tost(*trial(chosen, "confirmation"), tolerance, alpha=alpha)
    return Selection(path=tuple(path), screens=tuple(screens), chosen=chosen, confirmation=confirmation,
                     found=confirmation is not None and confirmation.equivalent)


@dataclass(frozen=True)
class SubspaceSearch:
    """Result of :func:`minimal_subspace`: the directions kept (1-based PC numbers), their basis and the walk.

    ``steps`` is the walk on the selection seeds. ``found`` is the verdict of one TOST
    on fresh seeds (``confirmation``, with its ``equivalence``): the relative change
    of return lies within ±``tolerance`` (two-sided). Report the confirmation's
    numbers, not the selection's: the walk picked its best candidate on those seeds.
    """

    layer: str
    tolerance: float
    method: str
    kept: tuple[int, ...]
    basis: np.ndarray
    explained_variance: float
    steps: tuple[SubspaceStep, ...]
    found: bool
    alpha: float = 0.05
    confirmation: Comparison | None = None
    equivalence: Equivalence | None = None

    @property
    def k(self) -> int:
        """Dimension of the subspace found (or of the largest one tried, when none passed the screen)."""
        return len(self.kept)

    @property
    def comparison(self) -> Comparison:
        """The comparison to report: the confirmation (fresh seeds) when there was one, else the last step's."""
        return self.confirmation if self.confirmation is not None else self.steps[-1].comparison

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"layer": self.layer, "tolerance": self.tolerance, "method": self.method, "found": self.found,
                "alpha": self.alpha, "k": self.k, "kept": list(self.kept), "explained_variance": self.explained_variance,
                "steps": [{"kept": list(s.kept), **s.comparison.to_dict(),
                           "equivalence": None if s.equivalence is None else s.equivalence.to_dict()}
                          for s in self.steps],
                "confirmation": None if self.confirmation is None else self.confirmation.to_dict(),
                "equivalence": None if self.equivalence is None else self.equivalence.to_dict()}

    def __str__(self) -> str:
        pct = round(float((1 - 2 * self.alpha) * 100))
        if self.found:
            verdict = (f"{self.k} principal direction(s) {list(self.kept)} suffice: on fresh seeds the {pct}% CI of "
                       f"the relative drop lies inside ±{self.tolerance:.1%}")
        elif self.confirmation is not None:
            verdict = (f"{self.k} principal direction(s) {list(self.kept)} passed the screen but were not confirmed "
                       f"on fresh seeds (the {pct}% CI of the relative drop is not inside ±{self.tolerance:.1%})")
        else:
            verdict = (f"no subspace of up to {self.k} directions kept return within ±{self.tolerance:.1%} "
                       f"(the {pct}% CI of the relative drop never lay inside it on the selection seeds)")
        lines = [f"minimal subspace at {self.layer} ({self.method}, tolerance ±{self.tolerance:.1%}, TOST at alpha "
                 f"{self.alpha:g}): {verdict} ({self.explained_variance:.1%} of the variance)",
                 f"selection walk (seeds {_seeds(self.steps[0].comparison)}):",
                 f"{'k':>3}  {'kept':<20} {'return':>10}  {'relative drop':>13}  {f'{pct}% CI (TOST)':>22}"]
        for step in self.steps:
            c = step.comparison
            ci = "—" if step.equivalence is None else _ci(step.equivalence.ci)
            lines.append(f"{len(step.kept):>3}  {list(step.kept)!s:<20} {c.treated.mean:>10.4g}  "
                         f"{_pct(c.relative_drop):>13}  {ci:>22}")
        if self.confirmation is not None and self.equivalence is not None:
            lines.append(f"confirmation (fresh seeds {_seeds(self.confirmation)}): return {self.confirmation.baseline.mean:.4g}"
                         f" → {self.confirmation.treated.mean:.4g}, {self.equivalence}")
        return "\n".join(lines)


def _seeds(c: Comparison) -> str:
    return f"{c.baseline.seeds[0]}..{c.baseline.seeds[-1]}"


def _ci(ci: tuple[float, float]) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def minimal_subspace(
    policy: Policy,
    env: EnvSpec,
    layer: LayerSpec,
    obs: Any,
    *,
    tolerance: float = defaults.TOLERANCE,
    candidates: int = 10,
    method: str = "greedy",
    episodes: int = defaults.SWEEP_EPISODES,
    seed: int = 0,
    confirm_episodes: int | None = None,
    alpha: float = 0.05,
    recurrent_state: RecurrentState | None = None,
    **evaluate_kwargs: Any,
) -> SubspaceSearch:
    """Smallest set of principal directions whose keep-only projection keeps return within ±``tolerance``.

    Keep-only means :func:`~rli.keep_subspace` with ``obs`` as reference: the layer's
    output keeps its component in the chosen directions and the rest is set to its
    mean over ``obs``. ``method="greedy"`` (the paper's protocol) adds, at each step,
    the candidate direction (among the top ``candidates`` principal directions) that
    gives the highest paired return; ``method="ordered"`` adds them by explained
    variance, which costs one evaluation per step instead of one per candidate.

    Selection and confirmation use different seeds (:func:`select_and_confirm`): the
    walk runs on seeds ``seed .. seed+episodes-1`` and stops at the first subspace
    whose TOST there puts the relative change of return within ±``tolerance``; that
    one subspace is then evaluated on the fresh seeds ``seed+episodes ..
    seed+episodes+confirm_episodes-1`` (``confirm_episodes`` defaults to
    ``episodes``), and ``found`` is the verdict of TOST at level ``alpha`` there: the
    ``1 − 2·alpha`` CI of the relative drop lies inside ±tolerance, two-sided (a large
    gain is no more "within tolerance" than a large loss). A recurrent policy's
    activations on ``obs`` (the PCA and the mean) run from the hidden states
    ``recurrent_state`` chooses, as in :func:`rli.capture`.

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
        >>> obs = rli.ObsSet.sample(policy, 500, seed=0)
        >>> search = rli.minimal_subspace(policy, "CartPole-v1", 1, obs, candidates=3, method="ordered", episodes=4)
        >>> search.k <= 3
        True
    """
    if not isinstance(method, str) or method not in ("greedy", "ordered"):
        raise RliError(f"method must be 'greedy' or 'ordered', not {method!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.integer, np.floating)) or \
            not 0 <= tolerance < 1:
        raise RliError(f"tolerance is a fraction of the baseline return in [0, 1), got {tolerance!r}")
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) or candidates < 1:
        raise RliError(f"candidates must be at least 1 (an integer), got {candidates!r}")
    for value, label in ((episodes, "episodes"), (confirm_episodes, "confirm_episodes")):
        if value is not None:
            checks.count(value, label, minimum=2, hint=" (paired episodes for a TOST)")
    alpha = stats.check_alpha(alpha)
    confirm = int(episodes if confirm_episodes is None else confirm_episodes)
    seed = checks.seed(seed)
    name = checks.policy(policy).layer(layer).name
    acts = capture(policy, obs, layers=[layer], recurrent_state=recurrent_state)[name]
    pool = min(int(candidates), acts.shape[1])
    pcs, ratios = fit_pca(acts, pool)
    phases = {"selection": (int(episodes), seed), "confirmation": (confirm, seed + int(episodes))}
    baselines: dict[str, EvalResult] = {}
    for phase in ("selection", "confirmation"):
        n, start = phases[phase]
        baselines[phase] = evaluate(policy, env, n, start, **evaluate_kwargs)
        if baselines[phase].mean == 0:
            raise RliError(f"the baseline mean return on the {phase} seeds {start}..{start + n - 1} is 0, so a "
                           "relative tolerance is undefined; use an environment or seed range with non-zero return")
    done: dict[tuple[tuple[int, ...], str], Comparison] = {}

    def trial(kept: tuple[int, ...], phase: str) -> tuple[np.ndarray, np.ndarray]:
        keep = keep_subspace(policy, layer, pcs[:, [k - 1 for k in kept]], obs=obs,
                             recurrent_state=recurrent_state)
        n, start = phases[phase]
        done[kept, phase] = compare(policy, env, keep, n, start, baseline=baselines[phase], **evaluate_kwargs)
        return done[kept, phase].baseline.returns, done[kept, phase].treated.returns

    walk = select_and_confirm(trial, pool, tolerance=float(tolerance), method=method, alpha=alpha)
    steps = tuple(SubspaceStep(kept=kept, comparison=done[kept, "selection"], equivalence=screen)
                  for kept, screen in zip(walk.path, walk.screens))
    kept = walk.path[-1]
    return SubspaceSearch(layer=name, tolerance=float(tolerance), method=method, kept=kept,
                          basis=pcs[:, [k - 1 for k in kept]], explained_variance=float(ratios[[k - 1 for k in kept]].sum()),
                          steps=steps, found=walk.found, alpha=alpha,
                          confirmation=None if walk.chosen is None else done[walk.chosen, "confirmation"],
                          equivalence=walk.confirmation)
