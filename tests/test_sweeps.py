"""Ablation curves and the minimal-subspace search on the shipped CartPole checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rli

CHECKPOINT = "examples/checkpoints/cartpole_ppo_seed0.zip"


@pytest.fixture(scope="module")
def policy() -> rli.Policy:
    return rli.load_policy(CHECKPOINT)


@pytest.fixture(scope="module")
def visited(policy) -> rli.ObsSet:
    return rli.ObsSet.from_rollouts("CartPole-v1", policy, n=2000, seed=100)


def test_curve_over_k_shares_the_baseline(policy, visited):
    curve = rli.ablation_curve(policy, "CartPole-v1", 5, visited, ks=[1, 64], episodes=5, seed=0)
    assert curve.values == (1, 64)
    assert all(c.baseline is curve.baseline for c in curve.comparisons)
    assert curve.relative_drops[1] > 0.5  # all 64 directions zeroed: the layer carries nothing
    assert curve.correction == "holm" and curve.significant[1]  # Holm over the 2 points still finds it
    assert curve.adjusted_p_values[1] >= curve.p_values[1] and "holm correction over 2 points" in str(curve)
    assert "ablation curve at mlp_extractor.policy_net.5 over k" in str(curve)
    json.dumps(curve.to_dict())


def test_curve_over_alpha_is_flat_at_one(policy, visited):
    curve = rli.ablation_curve(policy, "CartPole-v1", 5, visited, alphas=[1.0], episodes=3, seed=0)
    assert curve.comparisons[0].drop == 0


def test_curve_arguments(policy, visited):
    with pytest.raises(rli.RliError, match="exactly one of"):
        rli.ablation_curve(policy, "CartPole-v1", 5, visited, episodes=3)
    with pytest.raises(rli.RliError, match="positive numbers"):
        rli.ablation_curve(policy, "CartPole-v1", 5, visited, ks=[0], episodes=3)


@pytest.mark.parametrize("method", ["ordered", "greedy"])
def test_minimal_subspace_walk_stops_at_the_first_sufficient_subspace(policy, visited, method):
    search = rli.minimal_subspace(policy, "CartPole-v1", 5, visited, tolerance=0.05, candidates=4, method=method,
                                  episodes=5, seed=0)
    # the walk stops at the first step whose TOST on the selection seeds passes; "found" is one TOST on fresh seeds
    assert not any(step.equivalence.equivalent for step in search.steps[:-1])
    if search.confirmation is not None:
        assert search.steps[-1].equivalence.equivalent
        assert search.confirmation.baseline.seeds.tolist() == list(range(5, 10))  # disjoint from the walk's 0..4
        assert search.found == search.equivalence.equivalent
        assert (search.equivalence.ci[0] > -0.05 and search.equivalence.ci[1] < 0.05) or not search.found
    else:
        assert not search.found
    assert [len(s.kept) for s in search.steps] == list(range(1, search.k + 1))
    assert search.basis.shape == (64, search.k)
    np.testing.assert_allclose(search.basis.T @ search.basis, np.eye(search.k), atol=1e-6)
    if method == "ordered":
        assert search.kept == tuple(range(1, search.k + 1))
    json.dumps(search.to_dict())


def test_minimal_subspace_arguments(policy, visited):
    with pytest.raises(rli.RliError, match="method"):
        rli.minimal_subspace(policy, "CartPole-v1", 5, visited, method="random")
    with pytest.raises(rli.RliError, match="tolerance"):
        rli.minimal_subspace(policy, "CartPole-v1", 5, visited, tolerance=1.5)
