"""`compare`: paired evaluation with and without an intervention, on identical seeds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rli import checks
from rli.errors import RliError
from rli.interventions import bind_all
from rli.policy import Policy
from rli.rollout import EnvSpec, EvalResult, evaluate
from rli.stats import Equivalence, PairedComparison, paired_comparison, tost


@dataclass(frozen=True)
class Comparison:
    """Returns without (``baseline``) and with (``treated``) an intervention, paired by episode seed.

    ``drop`` is ``mean(baseline − treated)`` (positive when the intervention hurts),
    ``relative_drop`` the same over ``|mean(baseline)|``; ``ci`` is the paired
    Student-t interval of the drop and ``relative_ci`` that interval over
    ``|mean(baseline)|`` (the BCa bootstrap interval is only reported, in
    ``stats.bootstrap_ci``); ``p_value`` is the two-sided paired t-test, so
    ``significant`` (the CI excludes 0) and ``p_value < 1 − confidence`` agree.
    "No change" is not "the CI includes 0": ask :meth:`equivalence` (TOST: the
    ``1 − 2·alpha`` interval of the relative drop lies inside ±tolerance).
    """

    baseline: EvalResult
    treated: EvalResult
    stats: PairedComparison

    @property
    def intervention(self) -> str | None:
        """What was done (the intervention's description)."""
        return self.treated.intervention

    @property
    def drop(self) -> float:
        """Mean drop in return."""
        return self.stats.drop

    @property
    def relative_drop(self) -> float | None:
        """Mean drop over |mean baseline return| (``None`` when the baseline mean is 0)."""
        return self.stats.relative_drop

    @property
    def ci(self) -> tuple[float, float]:
        """Paired Student-t confidence interval of the drop."""
        return self.stats.ci

    @property
    def relative_ci(self) -> tuple[float, float] | None:
        """The paired t-interval of the drop over ``|mean(baseline)|`` (the baseline mean taken as known)."""
        return self.stats.relative_ci

    @property
    def p_value(self) -> float:
        """Two-sided paired t-test p-value for ``drop = 0``."""
        return self.stats.p_value

    @property
    def significant(self) -> bool:
        """Whether the confidence interval of the drop excludes 0."""
        return self.ci[0] > 0 or self.ci[1] < 0

    def equivalence(self, tolerance: float, *, alpha: float = 0.05) -> Equivalence:
        """TOST of "the relative change of mean return lies within ±``tolerance``" (two-sided).

        Equivalent when the ``1 − 2·alpha`` (Fieller) interval of the relative drop
        lies inside ±tolerance: a large gain refutes "no change" as a large loss does.
        See :func:`rli.stats.tost`.

        Example:
            >>> import numpy as np, torch, torch.nn as nn, rli
            >>> _ = torch.manual_seed(0)
            >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
            >>> same = rli.ablate(policy, 1, np.eye(8)[:, :2], alpha=1.0)  # alpha=1 leaves the layer as it is
            >>> rli.compare(policy, "CartPole-v1", intervention=same, episodes=4, seed=0).equivalence(0.05).equivalent
            True
        """
        return tost(self.baseline.returns, self.treated.returns, tolerance, alpha=alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        return {"intervention": self.intervention, "env": self.baseline.env, **self.stats.to_dict(),
                "seeds": self.baseline.seeds.tolist(), "baseline_returns": self.baseline.returns.tolist(),
                "treated_returns": self.treated.returns.tolist()}

    def __str__(self) -> str:
        head = (f"{self.intervention or 'no intervention'} on {self.baseline.env}, "
                f"seeds {self.baseline.seeds[0]}..{self.baseline.seeds[-1]}")
        return f"{head}\n{self.stats}"


def compare(
    policy: Policy,
    env: EnvSpec,
    intervention: Any,
    episodes: int,
    seed: int,
    *,
    baseline: EvalResult | None = None,
    confidence: float = 0.95,
    **evaluate_kwargs: Any,
) -> Comparison:
    """Evaluate with and without ``intervention`` on the same seeds and compare the returns, pair by pair.

    The positional order is DESIGN.md's ``(policy, env, intervention, episodes, seed)``;
    docs and examples pass ``intervention=``, ``episodes=`` and ``seed=`` by keyword, as
    for :func:`rli.evaluate` (where the intervention comes after the seed).
    ``intervention`` is an rli intervention not yet entered (it is entered once for
    the treated evaluation), built from ``policy`` or from another ``Policy`` object
    with the same network (see :meth:`~rli.Intervention.bind`). Pass ``baseline=``
    (an earlier :func:`evaluate` result on the same seeds) to reuse it across many
    comparisons. ``evaluate_kwargs`` go to
    :func:`~rli.evaluate` (``n_envs``, ``max_steps``, ``asynchronous``, ``progress``).

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
        >>> cut = rli.ablate(policy, 1, np.ones(8))
        >>> result = rli.compare(policy, "CartPole-v1", intervention=cut, episodes=6, seed=0)
        >>> result.baseline.seeds.tolist() == result.treated.seeds.tolist() == list(range(6))
        True
    """
    if intervention is None:
        raise RliError("compare() needs an intervention (e.g. rli.ablate(policy, 5, 'pc1', obs=obs)); "
                       "to evaluate without one use rli.evaluate")
    episodes = checks.count(episodes, "episodes", minimum=2, hint=" (a paired comparison needs at least 2 episodes)")
    seed = checks.seed(seed)
    if baseline is not None and not isinstance(baseline, EvalResult):
        raise RliError(f"baseline= must be an EvalResult from rli.evaluate on the same seeds, not "
                       f"{type(baseline).__name__}")
    intervention = bind_all(intervention, checks.policy(policy))  # RliError now, not after the baseline episodes
    if baseline is None:
        baseline = evaluate(policy, env, episodes, seed, **evaluate_kwargs)
    elif len(baseline.seeds) != episodes or int(baseline.seeds[0]) != int(seed):
        raise RliError(f"baseline= ran seeds {baseline.seeds[0]}..{baseline.seeds[-1]} but this comparison uses "
                       f"{seed}..{seed + episodes - 1}; pairs must share seeds")
    treated = evaluate(policy, env, episodes, seed, intervention=intervention, **evaluate_kwargs)
    return Comparison(baseline=baseline, treated=treated,
                      stats=paired_comparison(baseline.returns, treated.returns, confidence=confidence, seed=seed))
