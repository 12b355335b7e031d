"""Sweeps of paired comparisons: ablation curves and the minimal sufficient PCA subspace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rli import checks
from rli.capture import capture
from rli.comparison import Comparison, compare
from rli.errors import RliError
from rli.interventions import ablate, keep_subspace
from rli.policy import LayerSpec, Policy
from rli.recurrent import RecurrentState
from rli.rollout import EnvSpec, EvalResult, evaluate
from rli.subspace import fit_pca


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


@dataclass(frozen=True)
class AblationCurve:
    """Drop in return as a function of ``k`` (top-k principal directions removed) or of ``alpha``."""

    layer: str
    parameter: str
    values: tuple[float, ...]
    comparisons: tuple[Comparison, ...]

    @property
    def baseline(self) -> EvalResult:
        """The shared no-intervention evaluation."""
        return self.comparisons[0].baseline

    @property
    def relative_drops(self) -> tuple[float | None, ...]:
        """Relative drop in mean return at each point."""
        return tuple(c.relative_drop for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"layer": self.layer, "parameter": self.parameter, "values": list(self.values),
                "points": [c.to_dict() for c in self.comparisons]}

    def __str__(self) -> str:
        lines = [f"ablation curve at {self.layer} over {self.parameter} "
                 f"({len(self.baseline.returns)} paired episodes per point, baseline return {self.baseline.mean:.4g})",
                 f"{self.parameter:>8}  {'return':>10}  {'drop':>9}  {'95% CI of relative drop':>24}  {'p':>8}"]
        for value, c in zip(self.values, self.comparisons):
            ci = "—" if c.relative_ci is None else f"[{_pct(c.relative_ci[0])}, {_pct(c.relative_ci[1])}]"
            lines.append(f"{value:>8g}  {c.treated.mean:>10.4g}  {_pct(c.relative_drop):>9}  {ci:>24}  {c.p_value:>8.3g}")
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
    episodes: int = 10,
    seed: int = 0,
    recurrent_state: RecurrentState | None = None,
    **evaluate_kwargs: Any,
) -> AblationCurve:
    """Paired drop in return as more principal directions are removed (``ks``) or as ``alpha`` varies.

    With ``ks``, point *k* zeroes principal directions 1..k of ``layer``'s activations
    on ``obs``. With ``alphas``, ``direction`` (default ``"pc1"``) is scaled by each
    alpha (0 removes it, 1 leaves it, −1 reflects it). One baseline evaluation is
    shared by all points; every point uses the same seeds. A recurrent policy's
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
    """
    if (ks is None) == (alphas is None):
        raise RliError("give exactly one of ks= (numbers of principal directions to remove) or alphas=")
    name = checks.policy(policy).layer(layer).name
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
    return AblationCurve(layer=name, parameter=parameter, values=values, comparisons=comparisons)


@dataclass(frozen=True)
class SubspaceStep:
    """One step of the search: the principal directions kept so far and the paired comparison they gave."""

    kept: tuple[int, ...]
    comparison: Comparison


@dataclass(frozen=True)
class SubspaceSearch:
    """Result of :func:`minimal_subspace`: the directions kept (1-based PC numbers), their basis and the walk."""

    layer: str
    tolerance: float
    method: str
    kept: tuple[int, ...]
    basis: np.ndarray
    explained_variance: float
    steps: tuple[SubspaceStep, ...]
    found: bool

    @property
    def k(self) -> int:
        """Dimension of the subspace found (or of the largest one tried, when none was sufficient)."""
        return len(self.kept)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"layer": self.layer, "tolerance": self.tolerance, "method": self.method, "found": self.found,
                "k": self.k, "kept": list(self.kept), "explained_variance": self.explained_variance,
                "steps": [{"kept": list(s.kept), **s.comparison.to_dict()} for s in self.steps]}

    def __str__(self) -> str:
        verdict = (f"{self.k} principal direction(s) {list(self.kept)} suffice" if self.found else
                   f"no subspace of up to {self.k} directions kept return within {self.tolerance:.1%}")
        lines = [f"minimal subspace at {self.layer} ({self.method}, tolerance {self.tolerance:.1%}): {verdict} "
                 f"({self.explained_variance:.1%} of the variance)",
                 f"{'k':>3}  {'kept':<20} {'return':>10}  {'relative drop':>13}"]
        for step in self.steps:
            c = step.comparison
            lines.append(f"{len(step.kept):>3}  {str(list(step.kept)):<20} {c.treated.mean:>10.4g}  "
                         f"{_pct(c.relative_drop):>13}")
        return "\n".join(lines)


def minimal_subspace(
    policy: Policy,
    env: EnvSpec,
    layer: LayerSpec,
    obs: Any,
    *,
    tolerance: float = 0.05,
    candidates: int = 10,
    method: str = "greedy",
    episodes: int = 10,
    seed: int = 0,
    recurrent_state: RecurrentState | None = None,
    **evaluate_kwargs: Any,
) -> SubspaceSearch:
    """Smallest set of principal directions whose keep-only projection keeps return within ``tolerance``.

    Keep-only means :func:`~rli.keep_subspace` with ``obs`` as reference: the layer's
    output keeps its component in the chosen directions and the rest is set to its
    mean over ``obs``. ``method="greedy"`` (the paper's protocol) adds, at each step,
    the candidate direction (among the top ``candidates`` principal directions) that
    gives the highest paired return; ``method="ordered"`` adds them by explained
    variance, which costs one evaluation per step instead of one per candidate. The
    search stops at the first subspace whose mean relative drop is ≤ ``tolerance``.
    A recurrent policy's activations on ``obs`` (the PCA and the mean) run from the
    hidden states ``recurrent_state`` chooses, as in :func:`rli.capture`.

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
    name = checks.policy(policy).layer(layer).name
    acts = capture(policy, obs, layers=[layer], recurrent_state=recurrent_state)[name]
    pool = min(int(candidates), acts.shape[1])
    pcs, ratios = fit_pca(acts, pool)
    baseline = evaluate(policy, env, episodes, seed, **evaluate_kwargs)
    if baseline.mean == 0:
        raise RliError("the baseline mean return is 0, so a relative tolerance is undefined; "
                       "use an environment or seed range with non-zero return")

    def trial(kept: list[int]) -> Comparison:
        keep = keep_subspace(policy, layer, pcs[:, [k - 1 for k in kept]], reference_obs=obs,
                             recurrent_state=recurrent_state)
        return compare(policy, env, keep, episodes, seed, baseline=baseline, **evaluate_kwargs)

    kept: list[int] = []
    steps: list[SubspaceStep] = []
    found = False
    while len(kept) < pool and not found:
        remaining = [k for k in range(1, pool + 1) if k not in kept]
        options = remaining if method == "greedy" else remaining[:1]
        trials = {k: trial(kept + [k]) for k in options}
        best = max(options, key=lambda k: (trials[k].treated.mean, -k))
        kept.append(best)
        steps.append(SubspaceStep(kept=tuple(kept), comparison=trials[best]))
        found = trials[best].relative_drop <= tolerance
    return SubspaceSearch(layer=name, tolerance=tolerance, method=method, kept=tuple(kept),
                          basis=pcs[:, [k - 1 for k in kept]], explained_variance=float(ratios[[k - 1 for k in kept]].sum()),
                          steps=tuple(steps), found=found)
