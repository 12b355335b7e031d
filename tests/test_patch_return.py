"""Paired return of counterfactual patches: the identity bit for bit, a hand-written hook loop, scipy / statsmodels
for the statistics, a null simulation of the Holm family on drifting episodes and its power, leak-freedom."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from torch import nn

import rli
from rli import policy as policy_module
from rli.patch_return import counterfactual_patch, patch_return
from rli.patch_sweep import patch_sweep
from tests.doc_examples import python_blocks, run_blocks
from tests.test_interrupts import Tripwire, _hooks
from tests.test_steering import DriftCoin
from tests.test_zoo import CASES
from tests.zoo.build import checkpoint

CARTPOLE = "examples/checkpoints/cartpole_ppo_seed0.zip"
FORMATION = "examples/checkpoints/formation_ppo_seed42.zip"


def _mirror(obs: np.ndarray) -> np.ndarray:
    return obs * np.array([1.0, 1.0, -1.0, -1.0], dtype=np.float32)


def _identity(obs: np.ndarray) -> np.ndarray:
    return obs


def _params(policy: rli.Policy) -> list[torch.Tensor]:
    return [p.detach().clone() for p in policy.module.parameters()]


@pytest.fixture(scope="module")
def cartpole() -> rli.Policy:
    return rli.load_policy(CARTPOLE)


def test_identity_counterfactual_gives_the_unpatched_returns_bit_for_bit(cartpole):
    result = patch_return(cartpole, "CartPole-v1", _identity, ["actor.1", "actor.3[32]", 5], episodes=3, seed=3,
                          max_steps=60)
    for comparison in result.comparisons:
        assert np.array_equal(comparison.treated.returns, result.baseline.returns)
        assert np.array_equal(comparison.treated.lengths, result.baseline.lengths)
    assert np.all(result.drop == 0) and not result.significant.any() and np.all(result.p_value == 1)


@pytest.mark.slow  # ~3-9 s (loading the formation policy); the CNN identity below is in the default run
def test_identity_on_a_normalised_continuous_policy():
    """VecNormalize statistics and Box actions: the counterfactual runs through the same normaliser, exactly."""
    import rli.envs  # registers rli/FormationFlight-v0

    policy = rli.load_policy(FORMATION)
    assert policy.normalizer is not None
    result = patch_return(policy, "rli/FormationFlight-v0", _identity, ["actor.1", "actor.3[7]"], episodes=2, seed=0,
                          max_steps=40)
    for comparison in result.comparisons:
        assert np.array_equal(comparison.treated.returns, result.baseline.returns)


def test_identity_on_a_cnn_policy_by_channel_and_position():
    policy = rli.load_policy(checkpoint("ppo_cnn_chw"), **CASES["ppo_cnn_chw"].load)
    result = patch_return(policy, "tests.zoo.envs:ZooImage-v0", _identity, ["1[c3]", "3[@1,1]"], episodes=2, seed=0,
                          max_steps=12)
    for comparison in result.comparisons:
        assert np.array_equal(comparison.treated.returns, result.baseline.returns)


def _states(n: int, seed: int) -> np.ndarray:
    """CartPole-like states (the scale of an episode's)."""
    return (np.random.default_rng(seed).normal(size=(n, 4)) * [0.5, 0.5, 0.05, 0.5]).astype(np.float32)


def test_whole_layer_patch_acts_as_on_the_counterfactual(cartpole):
    obs = _states(64, 0)
    for layer in (1, 3, 5):
        with counterfactual_patch(cartpole, layer, _mirror, label="mirror") as swap:
            patched = cartpole.act(obs)
        assert np.array_equal(patched, cartpole.act(_mirror(obs)))
        assert not swap.active
    assert swap.describe() == "patch actor.5 from the counterfactual (mirror) of each observation"


def _hand_loop(net: nn.Sequential, layer: int, unit: int, corrupt: Any, seeds: list[int], max_steps: int) -> np.ndarray:
    """Episodes run one by one, the unit replaced by a forward hook with its value on corrupt(obs)."""
    returns = []
    for seed in seeds:
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=seed)
        total, steps, done = 0.0, 0, False
        while not done and steps < max_steps:
            x = torch.as_tensor(np.asarray(obs, np.float32)[None])
            with torch.no_grad():
                source = net[:layer + 1](torch.as_tensor(corrupt(x.numpy())))

                def swap(_m, _i, out, source=source):
                    out = out.clone()
                    out[:, unit] = source[:, unit]
                    return out
                handle = net[layer].register_forward_hook(swap)
                try:
                    action = int(net(x).argmax(dim=1)[0])
                finally:
                    handle.remove()
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        returns.append(total)
        env.close()
    return np.array(returns)


def test_matches_a_hand_written_hook_loop_and_scipy():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    with torch.no_grad():
        net[0].weight[0] = torch.tensor([0.0, 0.0, 5.0, 5.0])  # unit 0: the pole leans / turns right
        net[0].bias[0] = 0.0
        net[2].weight[:, 0] = torch.tensor([-3.0, 3.0])  # ... so push right: a policy that balances
        net[2].weight[:, 1:] *= 0.1
    policy = rli.load_policy(net, env="CartPole-v1")
    flip = _mirror
    result = patch_return(policy, "CartPole-v1", flip, ["actor.1[0]", "actor.0[1]"], episodes=5, seed=10,
                          max_steps=60)
    for name, (layer, unit) in zip(result.sites, [(1, 0), (0, 1)]):
        i = result.sites.index(name)
        expected = _hand_loop(net, layer, unit, flip, list(range(10, 15)), 60)
        np.testing.assert_array_equal(result.comparisons[i].treated.returns, expected)
        assert layer == 0 or unit != 0 or np.all(expected < result.baseline.returns)  # mirrored unit 0 drops the pole
        diff = result.baseline.returns - expected
        assert result.drop[i] == pytest.approx(diff.mean())
        if np.ptp(diff) > 0:
            assert result.p_value[i] == pytest.approx(st.ttest_rel(result.baseline.returns, expected).pvalue)
            assert result.ci[i] == pytest.approx(st.t.interval(0.95, 4, loc=diff.mean(), scale=st.sem(diff)))
    np.testing.assert_allclose(result.p_adjusted, multipletests(result.p_value, method="holm")[1])
    assert np.array_equal(result.significant, result.p_adjusted < 0.05)


# ------------------------------------------------------------------------------ calibration
def _coin_policy(*, carried_by_unit_0: bool = False) -> rli.Policy:
    """Three hidden units reading the drifting inputs (x0, x1, x0 − x1).

    Null: all three drive the action, so negating the inputs flips actions, and the coin env's return cannot
    depend on them. Power (``carried_by_unit_0``): unit 0 (biased to be positive) alone decides "action 1",
    which is rewarded; its counterfactual with x0 lowered by 4 often votes for action 0.
    """
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, -0.7]]))
        net[0].bias.copy_(torch.tensor([3.0 if carried_by_unit_0 else 0.0, 0.0, 0.0]))
        net[2].weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.3, 0.3] if carried_by_unit_0 else [1.0, 1.0, 1.0]]))
        net[2].bias.zero_()
    return rli.load_policy(net, observation_space=DriftCoin.observation_space, action_space=DriftCoin.action_space)


def _negate(obs: np.ndarray) -> np.ndarray:
    return -obs


def _lower_first(obs: np.ndarray) -> np.ndarray:
    out = np.array(obs, copy=True)
    out[:, 0] -= 4.0
    return out


SITES = ["actor.1[0]", "actor.1[1]", "actor.1[2]"]


def _null_rejections(reps: int, seed: int) -> int:
    """Reps where any site is significant: the coin env's return does not depend on what the policy sees."""
    policy = _coin_policy()
    return sum(bool(patch_return(policy, lambda: DriftCoin(steps=10), _negate, SITES, episodes=8, n_envs=8,
                                 seed=1000 * seed + 10 * rep).significant.any()) for rep in range(reps))


def _power_hits(reps: int, seed: int) -> int:
    """Reps where unit 0 is significant when action 1 is rewarded and its counterfactual often votes for action 0."""
    policy = _coin_policy(carried_by_unit_0=True)
    return sum(bool(patch_return(policy, lambda: DriftCoin(prefer=True, steps=10), _lower_first, SITES, episodes=8,
                                 n_envs=8, seed=1000 * seed + 10 * rep).significant[0]) for rep in range(reps))


def test_null_family_wise_error_and_power_fast():
    reps = 20
    assert _null_rejections(reps, seed=0) <= st.binom.ppf(0.99, reps, 0.05)
    assert _power_hits(4, seed=1) >= 3


@pytest.mark.slow
def test_null_family_wise_error_and_power_thorough():
    reps = 400
    assert _null_rejections(reps, seed=2) <= st.binom.ppf(0.99, reps, 0.05)
    assert _power_hits(100, seed=3) >= 80


# ------------------------------------------------------------------------------ leak-freedom and bad input
@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_rollout_leaves_nothing_behind(error):
    torch.manual_seed(0)
    wire = Tripwire()
    module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), wire, nn.Linear(8, 2))
    module.train()
    policy = rli.load_policy(module, env="CartPole-v1")
    before, hooks = _params(policy), _hooks(module)
    calls = {"n": 0}

    def corrupt(obs: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 7:
            raise error()
        return -obs

    for where in ("corrupt", "network"):
        calls["n"] = 0
        if where == "network":
            wire.arm(error(), 5)
        with pytest.raises(error):
            patch_return(policy, "CartPole-v1", corrupt, [1, "actor.3[0]"], episodes=2, seed=0, max_steps=30)
        assert _hooks(module) == hooks and not policy_module.observation_taps
        assert all(torch.equal(a, b) for a, b in zip(before, policy.module.parameters()))
        assert module.training and torch.is_grad_enabled()


def test_reusable_and_composable(cartpole):
    obs = _states(32, 1)
    swap = counterfactual_patch(cartpole, 3, _mirror)
    cut = rli.ablate(cartpole, 5, np.eye(64)[:, :3])
    with swap:
        first = cartpole.act(obs)
    with swap:
        again = cartpole.act(obs)
    assert np.array_equal(first, again)
    with cut, swap:
        both = cartpole.act(obs)
    with cut:
        expected = cartpole.act(_mirror(obs))  # actor.3 from the mirror, then actor.5 cut, as the mirror itself
    assert np.array_equal(both, expected)
    second = counterfactual_patch(cartpole, "actor.1", _mirror)
    mirrored = cartpole.act(_mirror(obs))
    with second, swap:  # two counterfactual patches: each from the unpatched counterfactual run
        assert np.array_equal(cartpole.act(obs), mirrored)
    with swap, pytest.raises(rli.RliError, match="already active"):
        swap.__enter__()
    assert not policy_module.observation_taps and not swap.active


def test_bad_input_is_an_rli_error(cartpole):
    with pytest.raises(rli.RliError, match="corrupt must be a function"):
        counterfactual_patch(cartpole, 1, np.zeros(4))
    with pytest.raises(rli.RliError, match="site"):
        counterfactual_patch(cartpole, "actor.1[99]", _mirror)
    with pytest.raises(rli.RliError, match="actor trunk"):
        counterfactual_patch(cartpole, "critic.1", _mirror)
    with pytest.raises(rli.RliError, match="patch site"):
        counterfactual_patch(cartpole, 1.5, _mirror)
    with pytest.raises(rli.RliError, match="twice"):
        patch_return(cartpole, "CartPole-v1", _mirror, ["actor.1", 1], episodes=2)
    with pytest.raises(rli.RliError, match="empty"):
        patch_return(cartpole, "CartPole-v1", _mirror, [], episodes=2)
    with pytest.raises(rli.RliError, match="same shape"):
        with counterfactual_patch(cartpole, 1, lambda o: o[:, :2]):
            cartpole.act(np.zeros((3, 4), np.float32))
    with pytest.raises(rli.RliError, match=r"not inside rli\.capture"):
        with counterfactual_patch(cartpole, 1, _mirror):
            rli.capture(cartpole, np.zeros((3, 4), np.float32), layers=[3])
    assert not policy_module.observation_taps
    recurrent = rli.load_policy(checkpoint("recurrentppo_cartpole"), **CASES["recurrentppo_cartpole"].load)
    with pytest.raises(rli.RliError, match="feed-forward"):
        counterfactual_patch(recurrent, 0, _mirror)


def test_top_sites_of_a_sweep(cartpole):
    obs = _states(30, 2)
    sweep = patch_sweep(cartpole, obs, _mirror(obs), metric="prob", over=("layer",), layers=[1, 3, 5])
    result = patch_return(cartpole, "CartPole-v1", _mirror, sweep, top=2, episodes=2, seed=0, max_steps=30)
    assert list(result.sites) == sweep.top(2)
    assert result.to_dict()["sites"][0]["site"] == sweep.top(1)[0]


@pytest.mark.slow
def test_formation_example_runs(tmp_path, monkeypatch):
    """docs/causal.md's formation example runs as written, in order, in one namespace (its asserts included)."""
    from pathlib import Path

    root = Path(__file__).parent.parent
    text = (root / "docs" / "causal.md").read_text()
    text = text[text.index("## Worked example: the formation policy"):]
    text = text[:text.index("\n## ", 1)]
    blocks = python_blocks(text)
    assert len(blocks) == 4
    run_blocks(blocks, "docs/causal.md", tmp_path, monkeypatch)
