"""``assert_steering_changes``: adding a steering vector changes behaviour, measured on paired rollouts.

A plain function with explicit ``policy=`` and ``env=`` (like those of
:mod:`pytest_rli.assertions`): it records its metric for the session summary,
JUnit properties, reports and baselines through :func:`pytest_rli.assertions.finish`, and
fails with the evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import rli
from pytest_rli.assertions import finish
from rli import defaults
from rli.steering import steer

_DIRECTIONS = ("any", "increase", "decrease")


def _per_episode(metric: Any, result: Any) -> np.ndarray:
    if metric == "return":
        return np.asarray(result.returns, dtype=np.float64)
    if metric == "length":
        return np.asarray(result.lengths, dtype=np.float64)
    if callable(metric):
        values = np.asarray(metric(result), dtype=np.float64)
        if values.shape != (len(result.returns),):
            raise rli.RliError(f"assert_steering_changes: the metric callable must return one number per episode "
                               f"({len(result.returns)}), got shape {values.shape}")
        return values
    raise rli.RliError(f"assert_steering_changes: metric must be 'return', 'length' or a callable "
                       f"f(EvalResult) -> one number per episode, not {metric!r}")


def assert_steering_changes(*, policy: rli.Policy, env: Any, layer: Any, vector: Any, coeff: float = 1.0,
                            metric: str | Callable[[Any], Any] = "return", min_effect: float,
                            direction: str = "any", episodes: int = defaults.EPISODES, seed: int = 0,
                            tolerance: float | None = None, **evaluate_options: Any) -> rli.Comparison:
    """Steering with ``coeff · vector`` at ``layer`` changes ``metric``: on paired episodes (same seeds with and
    without), the 95% t-interval of the mean change excludes 0 and ``|mean change| ≥ min_effect``.

    ``metric`` is ``"return"``, ``"length"`` or ``f(EvalResult) -> one number per episode``;
    ``min_effect`` is in the metric's units; ``direction="increase"`` / ``"decrease"``
    also asks the change to have that sign (the interval on that side of 0).
    Returns the :class:`rli.Comparison` (returns with and without).

    Example:
        >>> import torch, torch.nn as nn, rli
        >>> from pytest_rli.steering_assertions import assert_steering_changes
        >>> net = nn.Sequential(nn.Linear(4, 2))  # pushes the cart toward where the pole leans: balances
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[0.0, 0, -1, -1], [0, 0, 1, 1]])); _ = net[0].bias.zero_()
        >>> policy = rli.load_policy(net, env="CartPole-v1")
        >>> result = assert_steering_changes(policy=policy, env="CartPole-v1", layer=0, vector=[1.0, -1.0], coeff=5.0,
        ...                                  metric="length", min_effect=50, direction="decrease", episodes=6, seed=0)
        >>> result.baseline.lengths.tolist(), result.treated.lengths.tolist()
        ([334, 500, 500, 500, 500, 500], [11, 10, 9, 9, 8, 9])
    """
    __tracebackhide__ = True
    if isinstance(min_effect, bool) or not isinstance(min_effect, (int, float, np.integer, np.floating)) or \
            not 0 <= min_effect < float("inf"):
        raise rli.RliError(f"assert_steering_changes: min_effect is the smallest change that counts, a number ≥ 0 in "
                           f"the metric's units, got {min_effect!r}")
    if direction not in _DIRECTIONS:
        raise rli.RliError(f"assert_steering_changes: direction must be one of {', '.join(map(repr, _DIRECTIONS))}, "
                           f"not {direction!r}")
    if not (metric in ("return", "length") or callable(metric)):
        _per_episode(metric, None)
    intervention = steer(policy, layer, vector, coeff)
    result = rli.compare(policy, env, intervention, episodes, seed, **evaluate_options)
    change = _per_episode(metric, result.treated) - _per_episode(metric, result.baseline)
    effect = float(change.mean())
    if change.max() == change.min():
        ci, p = (effect, effect), (1.0 if effect == 0 else 0.0)
    else:
        ci = rli.stats.t_interval(change)
        p = rli.stats.paired_ttest(change, np.zeros_like(change))[1]
    excludes = {"any": ci[0] > 0 or ci[1] < 0, "increase": ci[0] > 0, "decrease": ci[1] < 0}[direction]
    large = abs(effect) >= min_effect
    passed = bool(excludes and large)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    problems = []
    if not excludes:
        side = {"any": "exclude 0", "increase": "lie above 0", "decrease": "lie below 0"}[direction]
        problems.append(f"the 95% CI of the change [{ci[0]:+.4g}, {ci[1]:+.4g}] does not {side}")
    if not large:
        problems.append(f"|mean change| {abs(effect):.4g} is below min_effect={min_effect:g}")
    evidence = [f"{intervention.describe()}: mean {name} {_per_episode(metric, result.baseline).mean():.4g} without, "
                f"{_per_episode(metric, result.treated).mean():.4g} with; change {effect:+.4g} "
                f"[{ci[0]:+.4g}, {ci[1]:+.4g}] (paired t over {episodes} episodes, seeds {seed}..{seed + episodes - 1}), "
                f"p = {p:.3g}"]
    if not passed and len(change) > 1 and np.std(change, ddof=1) > 0:
        needed = int(np.ceil((2.8 * np.std(change, ddof=1) / max(min_effect, 1e-12)) ** 2))
        evidence.append(f"to detect a change of {min_effect:g} with 80% power at this spread "
                        f"(sd {np.std(change, ddof=1):.4g}) needs about {max(needed, 2)} episodes")
    size_ci = ci if effect >= 0 else (-ci[1], -ci[0])  # the interval of |effect|'s side of the change
    finish("assert_steering_changes", f"assert_steering_changes[{intervention.describe()}]",
           metric="steering_effect", value=abs(effect), threshold=min_effect, op="ci excludes 0 and |effect| >=",
           higher_is_better=True, passed=passed,
           summary=f"steering at {policy.layer(layer).name} does not change {name}: {'; '.join(problems)}",
           evidence=evidence, ci=size_ci, layer=policy.layer(layer).name, tolerance=tolerance,
           details={"p_value": p, "episodes": episodes, "seed": seed, "coeff": coeff, "direction": direction,
                    "effect": effect})
    return result
