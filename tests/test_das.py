"""Distributed alignment search: recovers a planted rotated variable (IIA ≫ random-rotation control), finds
nothing above the control where the variable is not in the layer (null rate ≤ 5%), keeps the policy frozen
and leak-free, checks its input, and runs on the zoo's MLP, CNN and recurrent policies."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats as st
from scipy.stats import ortho_group
from torch import nn

import rli
from rli.das import das
from tests.test_interrupts import Tripwire, _hooks
from tests.test_zoo import CASES
from tests.zoo.build import checkpoint


def _rotated(seed: int, carry_variable: bool = True) -> rli.Policy:
    """actor.0 stores x0 along a random direction q of R^6 (mixed with x1, x2); the head acts on sign(q·h).

    Without ``carry_variable`` the layer stores only x1 and x2 (and the head reads x1): the variable x0 is
    nowhere in it.
    """
    q = ortho_group.rvs(6, random_state=seed)
    net = nn.Sequential(nn.Linear(3, 6), nn.Linear(6, 2))
    weight = q[:, :3].copy()
    if not carry_variable:
        weight[:, 0] = 0.0
    read = q[:, 0] if carry_variable else q[:, 1]
    with torch.no_grad():
        net[0].weight.copy_(torch.as_tensor(weight))
        net[0].bias.zero_()
        net[1].weight.copy_(torch.as_tensor(np.stack([-read, read])))
        net[1].bias.zero_()
    return rli.load_policy(net, action_space=gym.spaces.Discrete(2))


def _episodes(rng: np.random.Generator, episodes: int, steps: int) -> np.ndarray:
    """AR(1) drifting observations (ρ = 0.9) within episodes."""
    x = np.zeros((episodes, steps, 3))
    x[:, 0] = rng.normal(size=(episodes, 3))
    for t in range(1, steps):
        x[:, t] = 0.9 * x[:, t - 1] + np.sqrt(0.19) * rng.normal(size=(episodes, 3))
    return x.reshape(-1, 3)


def _pairs(rng: np.random.Generator, episodes: int = 12, steps: int = 12) -> tuple:
    base, source = _episodes(rng, episodes, steps), _episodes(rng, episodes, steps)
    target = (source[:, 0] > 0).astype(int)  # the causal model: the action is sign(x0), x0 taken from the source
    return (base, source, target), np.repeat(np.arange(episodes), steps)


def test_recovers_a_planted_rotated_variable():
    policy = _rotated(0)
    pairs, groups = _pairs(np.random.default_rng(0), episodes=30, steps=6)
    before = [p.detach().clone() for p in policy.module.parameters()]
    hooks = _hooks(policy.module)
    result = das(policy, 0, pairs, k=1, epochs=50, groups=groups, n_controls=4)
    assert result.iia >= 0.95 and result.ci[0] > result.control + 0.1
    assert result.p_value < 0.01
    q = ortho_group.rvs(6, random_state=0)[:, 0]
    assert abs(float(result.basis[:, 0] @ q)) > 0.95  # the learned direction is the planted one
    np.testing.assert_allclose(result.basis.T @ result.basis, np.eye(1), atol=1e-8)
    assert all(torch.equal(a, b) for a, b in zip(before, policy.module.parameters()))
    assert all(p.grad is None for p in policy.module.parameters())
    assert _hooks(policy.module) == hooks
    assert result.n_test + result.n_train == len(pairs[2])


def _null_rejections(reps: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    count = 0
    for rep in range(reps):
        policy = _rotated(1000 * seed + rep, carry_variable=False)
        pairs, groups = _pairs(rng, episodes=10, steps=8)
        result = das(policy, 0, pairs, k=1, epochs=10, groups=groups, n_controls=2, seed=rep)
        count += bool(result.p_value < 0.05)
    return count


def test_null_finds_nothing_above_the_random_rotation_control_fast():
    reps = 16
    assert _null_rejections(reps, seed=1) <= st.binom.ppf(0.99, reps, 0.05)


@pytest.mark.slow
def test_null_finds_nothing_above_the_random_rotation_control_thorough():
    reps = 300
    assert _null_rejections(reps, seed=2) <= st.binom.ppf(0.99, reps, 0.05)


@pytest.mark.parametrize("name,env,layer", [("ppo_cartpole", "CartPole-v1", 1),
                                            ("ppo_cnn_chw", "tests.zoo.envs:ZooImage-v0", 8),
                                            ("recurrentppo_cartpole", "CartPole-v1", 0)])
def test_runs_on_the_zoo(name, env, layer):
    policy = rli.load_policy(checkpoint(name), **CASES[name].load)
    obs = rli.ObsSet.from_rollouts(env, policy, n=24, seed=0, episodes=3)
    order = np.random.default_rng(0).permutation(len(obs))
    source = obs[order]
    target = policy.act(source)  # the variable "everything the source's layer holds": swapping all of it works
    before = [p.detach().clone() for p in policy.module.parameters()]
    result = das(policy, layer, (obs, source, target.astype(int)), k=2, epochs=5, n_controls=2)
    assert 0.0 <= result.iia <= 1.0 and len(result.control_iia) == 2
    assert all(torch.equal(a, b) for a, b in zip(before, policy.module.parameters()))


def test_bad_input_is_an_rli_error():
    policy = _rotated(0)
    (base, source, target), _ = _pairs(np.random.default_rng(0), 3, 5)
    with pytest.raises(rli.RliError, match="pairs must be"):
        das(policy, 0, (base, source), k=1)
    with pytest.raises(rli.RliError, match="integer action"):
        das(policy, 0, (base, source, target.astype(float)), k=1)
    with pytest.raises(rli.RliError, match="15 rows"):
        das(policy, 0, (base, source[:4], target), k=1)
    with pytest.raises(rli.RliError, match="k"):
        das(policy, 0, (base, source, target), k=6)
    with pytest.raises(rli.RliError, match="holdout"):
        das(policy, 0, (base, source, target), k=1, holdout=1.5)
    with pytest.raises(rli.RliError, match="action indices"):
        das(policy, 0, (base, source, target + 5), k=1)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_training_leaves_nothing_behind(error):
    torch.manual_seed(0)
    wire = Tripwire()
    module = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), wire, nn.Linear(6, 2))
    module.train()
    policy = rli.load_policy(module, action_space=gym.spaces.Discrete(2))
    before, hooks = [p.detach().clone() for p in module.parameters()], _hooks(module)
    (base, source, target), _ = _pairs(np.random.default_rng(0), 4, 10)
    state = torch.random.get_rng_state()
    for calls in (1, 3, 8):
        wire.arm(error(), calls)
        with pytest.raises(error):
            das(policy, 1, (base, source, target), k=1, epochs=10)
        assert _hooks(module) == hooks and module.training and torch.is_grad_enabled()
        assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
        assert all(p.grad is None for p in module.parameters())
    assert torch.equal(state, torch.random.get_rng_state())
