"""rli.compare: paired evaluations on identical seeds, with honest statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rli

CHECKPOINT = "examples/checkpoints/cartpole_ppo_seed0.zip"


@pytest.fixture(scope="module")
def policy() -> rli.Policy:
    return rli.load_policy(CHECKPOINT)


def test_removing_the_whole_layer_is_a_significant_drop(policy):
    blank = rli.ablate(policy, 5, np.eye(64))
    result = rli.compare(policy, "CartPole-v1", blank, episodes=8, seed=0)
    assert result.baseline.mean == 500.0
    assert result.relative_drop > 0.5 and result.significant and result.p_value < 1e-3
    assert result.ci[0] > 0
    assert "zero 64 directions at actor.5" in str(result)
    json.dumps(result.to_dict())


def test_identity_intervention_changes_nothing(policy):
    identity = rli.ablate(policy, 5, np.eye(64)[:, :3], alpha=1.0)
    result = rli.compare(policy, "CartPole-v1", identity, episodes=4, seed=3)
    np.testing.assert_array_equal(result.baseline.returns, result.treated.returns)
    assert result.drop == 0 and not result.significant
    assert result.equivalence(0.05).equivalent  # an exact no-change is inside any tolerance (TOST)
    blank = rli.compare(policy, "CartPole-v1", rli.ablate(policy, 5, np.eye(64)), episodes=4, seed=3)
    assert not blank.equivalence(0.05).equivalent  # a >50% loss is not "within tolerance"


def test_baseline_reuse_and_its_checks(policy):
    baseline = rli.evaluate(policy, "CartPole-v1", episodes=4, seed=10)
    blank = rli.ablate(policy, 5, np.eye(64))
    reused = rli.compare(policy, "CartPole-v1", blank, episodes=4, seed=10, baseline=baseline)
    assert reused.baseline is baseline
    with pytest.raises(rli.RliError, match="pairs must share seeds"):
        rli.compare(policy, "CartPole-v1", blank, episodes=4, seed=11, baseline=baseline)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"intervention": None}, "needs an intervention"),
    ({"episodes": 1}, "at least 2 episodes"),
])
def test_bad_arguments(policy, kwargs, message):
    args = {"intervention": rli.ablate(policy, 5, np.ones(64)), "episodes": 4} | kwargs
    with pytest.raises(rli.RliError, match=message):
        rli.compare(policy, "CartPole-v1", seed=0, **args)


def test_the_intervention_is_reusable_across_comparisons(policy):
    blank = rli.ablate(policy, 5, np.eye(64))
    first = rli.compare(policy, "CartPole-v1", blank, episodes=3, seed=0)
    second = rli.compare(policy, "CartPole-v1", blank, episodes=3, seed=0)
    np.testing.assert_array_equal(first.treated.returns, second.treated.returns)
    assert not blank.active
