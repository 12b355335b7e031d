"""Null calibration and power of assert_attribution_in's decision rule (CI lower bound of the share ≥ min_share).

Data are episodes of a slowly drifting state (AR(1), ρ = 0.95) whose scale is drawn per episode and per input, so
rows of one episode are strongly correlated and episodes differ: a CI over rows would be far too narrow. The
planted networks are ``tanh(w · x)``; with the zero baseline IG gives ``attr_i ∝ w_i x_i``, so with equal weights
on two exchangeable inputs the expected share of input 0 is exactly 1/2 — the boundary of the claim
``min_share=0.5``, the hardest null there is — whatever ``n_steps`` (every path point scales all inputs'
attributions alike, so one point, the cheapest, gives the same shares). The false-pass rate must stay within the
99th percentile of Binomial(R, 0.05), fixed in advance (measured at R = 1000: 25 false passes at the boundary, 0 on
the irrelevant input). Power is checked on a planted dependency, weight 3 on input 0 (measured 858/1000; 85/100,
and 48/100 at weight 2, in a side run); the fast bound 0.65 lies below the 1st percentile of Binomial(40, 0.85)/40.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import rli
from pytest_rli.attribution_assertions import assert_attribution_in


def _network(weights: list[float]) -> rli.Policy:
    linear = nn.Linear(len(weights), 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([weights]))
    return rli.load_policy(nn.Sequential(linear, nn.Tanh()))


def _episodes(rng: np.random.Generator, n_episodes: int = 12, length: int = 20, dim: int = 3) -> rli.ObsSet:
    scale = rng.lognormal(sigma=0.5, size=(n_episodes, 1, dim))
    x = np.zeros((n_episodes, length, dim))
    x[:, 0] = rng.normal(size=(n_episodes, dim))
    for t in range(1, length):
        x[:, t] = 0.95 * x[:, t - 1] + np.sqrt(1 - 0.95**2) * rng.normal(size=(n_episodes, dim))
    x = (x * scale).reshape(-1, dim).astype(np.float32)
    return rli.ObsSet(x, labels={"episode": np.repeat(np.arange(n_episodes), length)})


def _passes(policy: rli.Policy, obs: rli.ObsSet, inputs: list[int], min_share: float) -> bool:
    try:
        assert_attribution_in(policy=policy, obs=obs, inputs=inputs, min_share=min_share, target="action:0", n_steps=1)
    except AssertionError:
        return False
    return True


def _rates(repeats: int, seed: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(seed)
    null, irrelevant, power = _network([1.0, 1.0, 0.0]), _network([1.0, 1.0, 0.0]), _network([3.0, 1.0, 0.0])
    false_boundary = false_irrelevant = hits = 0
    for _ in range(repeats):
        obs = _episodes(rng)
        false_boundary += _passes(null, obs, [0], 0.5)
        false_irrelevant += _passes(irrelevant, obs, [2], 0.02)  # the output does not depend on input 2 at all
        hits += _passes(power, obs, [0], 0.5)
    return false_boundary, false_irrelevant, hits


def _check(repeats: int, seed: int, min_power: float) -> None:
    bound = stats.binom.ppf(0.99, repeats, 0.05)
    false_boundary, false_irrelevant, hits = _rates(repeats, seed)
    assert false_boundary <= bound, f"{false_boundary}/{repeats} false passes at the boundary (bound {bound:.0f})"
    assert false_irrelevant <= bound, f"{false_irrelevant}/{repeats} false passes on an irrelevant input"
    assert hits >= min_power * repeats, f"power {hits}/{repeats} on a planted weight 3 (share ≈ 0.7)"


def test_share_rule_null_and_power_fast():
    _check(40, seed=0, min_power=0.65)


@pytest.mark.slow
def test_share_rule_null_and_power_thorough():
    _check(1000, seed=1, min_power=0.8)


def test_rows_as_groups_would_be_overconfident():
    """Why the CI is over episodes: treating correlated rows as independent passes the boundary null far too often."""
    rng = np.random.default_rng(2)
    policy = _network([1.0, 1.0, 0.0])
    repeats, false_rows = 20, 0
    for _ in range(repeats):
        obs = _episodes(rng)
        try:
            assert_attribution_in(policy=policy, obs=obs, inputs=[0], min_share=0.5, target="action:0", n_steps=1,
                                  groups=np.arange(len(obs)))
            false_rows += 1
        except AssertionError:
            pass
    assert false_rows > stats.binom.ppf(0.99, repeats, 0.05)  # the row-level interval fails calibration
