"""rli.evaluate: seeded, exact episode counts, independent of n_envs, interventions entered once."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import rli
from rli.rollout import evaluate


@pytest.fixture
def wobbly() -> rli.Policy:
    """An untrained linear CartPole policy: episodes of very different lengths."""
    torch.manual_seed(3)
    return rli.load_policy(nn.Sequential(nn.Linear(4, 2)), env="CartPole-v1")


def _manual(policy: rli.Policy, env_id: str, episodes: int, seed: int) -> tuple[list[float], list[int]]:
    env = gym.make(env_id)
    returns, lengths = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs)[0])
            total, steps, done = total + reward, steps + 1, terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return returns, lengths


def test_matches_a_plain_loop_whatever_n_envs(wobbly):
    expected_returns, expected_lengths = _manual(wobbly, "CartPole-v1", 9, seed=11)
    assert len(set(expected_lengths)) > 3
    for n_envs in (1, 2, 4, 9, 32):
        result = evaluate(wobbly, "CartPole-v1", episodes=9, seed=11, n_envs=n_envs)
        np.testing.assert_array_equal(result.returns, expected_returns)
        np.testing.assert_array_equal(result.lengths, expected_lengths)
        np.testing.assert_array_equal(result.seeds, np.arange(11, 20))


def test_asynchronous_gives_the_same_numbers(wobbly):
    sync = evaluate(wobbly, "CartPole-v1", episodes=4, seed=0, n_envs=2)
    async_ = evaluate(wobbly, "CartPole-v1", episodes=4, seed=0, n_envs=2, asynchronous=True)
    np.testing.assert_array_equal(sync.returns, async_.returns)


def test_recurrent_policy_is_independent_of_n_envs(sb3_zip):
    policy = rli.load_policy(sb3_zip("RecurrentPPO")[1])
    one = evaluate(policy, "CartPole-v1", episodes=5, seed=2, n_envs=1)
    three = evaluate(policy, "CartPole-v1", episodes=5, seed=2, n_envs=3)
    np.testing.assert_array_equal(one.returns, three.returns)


def test_max_steps_caps_and_is_counted(sb3_zip):
    policy = rli.load_policy("examples/checkpoints/cartpole_ppo_seed0.zip")
    result = evaluate(policy, "CartPole-v1", episodes=3, seed=0, max_steps=50)
    assert result.lengths.tolist() == [50, 50, 50] and result.truncated_by_max_steps == 3


class Counting:
    """A stand-in intervention: counts how often it is entered."""

    def __init__(self):
        self.entered = self.exited = 0

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        self.exited += 1

    def describe(self):
        return "counting"


def test_intervention_is_entered_once_and_named(wobbly):
    counting = Counting()
    result = evaluate(wobbly, "CartPole-v1", episodes=6, seed=0, intervention=counting, n_envs=3)
    assert (counting.entered, counting.exited) == (1, 1)
    assert result.intervention == "counting" and "under counting" in str(result)
    assert result.to_dict()["episodes"] == 6


def test_intervention_exits_when_the_rollout_raises(wobbly):
    counting = Counting()

    def broken():
        env = gym.make("CartPole-v1")
        env.step = lambda action: (_ for _ in ()).throw(RuntimeError("env broke"))
        return env

    with pytest.raises(RuntimeError, match="env broke"):
        evaluate(wobbly, broken, episodes=2, seed=0, intervention=counting)
    assert counting.exited == 1


def test_factories_and_instances(wobbly):
    factory = lambda: rli.wrappers.NegateSensors(gym.make("CartPole-v1"), [2])  # noqa: E731
    assert len(evaluate(wobbly, factory, episodes=3, seed=0, n_envs=3).returns) == 3
    instance = gym.make("CartPole-v1")
    assert len(evaluate(wobbly, instance, episodes=2, seed=0, n_envs=1).returns) == 2
    with pytest.raises(rli.RliError, match="cannot be copied"):
        evaluate(wobbly, instance, episodes=2, seed=0, n_envs=2)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"episodes": 0}, "episodes must be a positive integer"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"env": "NoSuchEnv-v0"}, "unknown environment"),
    ({"env": "Pendulum-v1"}, r"observations have shape \(3,\) but the policy takes \(4,\)"),
    ({"max_steps": 0}, "max_steps must be positive"),
])
def test_bad_arguments(wobbly, kwargs, message):
    args = {"env": "CartPole-v1", "episodes": 2, "seed": 0} | kwargs
    with pytest.raises(rli.RliError, match=message):
        evaluate(wobbly, args.pop("env"), **args)


def test_torch_threads_are_restored(wobbly):
    threads = torch.get_num_threads()
    evaluate(wobbly, "CartPole-v1", episodes=1, seed=0)
    assert torch.get_num_threads() == threads


def _sb3_loop(model, env_id: str, episodes: int, seed: int, normalize=None) -> list[float]:
    """The reference loop: reset episode i with seed + i, SB3's predict(deterministic=True) on every step."""
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(normalize(obs) if normalize else obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return returns


def test_matches_sb3_predict_on_pendulum(sb3_zip):
    """Pendulum is not chaotic: batched and batch-1 rounding differ by ~1e-7 and stay that small."""
    model, path = sb3_zip("PPO")
    result = evaluate(rli.load_policy(path), "Pendulum-v1", episodes=3, seed=7, n_envs=2)
    np.testing.assert_allclose(result.returns, _sb3_loop(model, "Pendulum-v1", 3, 7), rtol=1e-6)


class _Block16:
    """SB3's predict, but computed in a zero-padded block of 16 rows as rli.evaluate computes it."""

    def __init__(self, model):
        self.model = model

    def predict(self, obs, deterministic):
        block = np.zeros((16, *obs.shape), dtype=obs.dtype)
        block[0] = obs
        return self.model.predict(block, deterministic=deterministic)[0][0], None


@pytest.mark.slow  # MuJoCo rollouts; tests/test_zoo.py checks act against predict on every policy kind
def test_matches_sb3_predict_on_the_shipped_halfcheetah():
    """HalfCheetah is chaotic: a last-bit difference in one action changes the episode, so the loop
    computes SB3's predict with the same block size rli uses; then the returns are bit-identical."""
    pytest.importorskip("mujoco")
    from pathlib import Path

    from stable_baselines3 import PPO

    from rli.loading import read_vecnormalize

    path = Path("examples/checkpoints/halfcheetah_ppo_seed0.zip")
    model = PPO.load(path, device="cpu")
    normalizer = read_vecnormalize(path.with_name("halfcheetah_ppo_seed0_vecnormalize.pkl"))
    expected = _sb3_loop(_Block16(model), "HalfCheetah-v5", 2, 3, normalize=normalizer)
    for n_envs in (1, 2):
        result = evaluate(rli.load_policy(path), "HalfCheetah-v5", episodes=2, seed=3, n_envs=n_envs)
        np.testing.assert_array_equal(result.returns, expected)
    assert result.mean > 4000


def test_a_row_is_computed_the_same_wherever_it_sits_in_the_block():
    from rli.rollout import BLOCK, _fixed_block_step

    policy = rli.load_policy("examples/checkpoints/halfcheetah_ppo_seed0.zip")
    rng = np.random.default_rng(0)
    row = rng.normal(size=(1, 17)).astype(np.float32)
    with policy.inference():
        alone, _ = _fixed_block_step(policy, row, None, np.ones(1, dtype=bool))
        for n, position in ((5, 3), (BLOCK, BLOCK - 1), (BLOCK + 3, BLOCK + 1)):
            batch = rng.normal(size=(n, 17)).astype(np.float32)
            batch[position] = row[0]
            actions, _ = _fixed_block_step(policy, batch, None, np.ones(n, dtype=bool))
            np.testing.assert_array_equal(actions[position], alone[0])


def _null_coverage(runs: int) -> tuple[int, int]:
    """How often the paired 95% CI of a null intervention's drop covers 0: ``(covered, runs)``.

    Pendulum is symmetric under the mirror M: θ → −θ, θ̇ → −θ̇, torque → −torque, and so
    is its start distribution. A policy π and its mirror image π'(s) = −π(Ms) therefore
    have exactly the same distribution of returns, while every single episode differs:
    the honest worst case for a paired test, where both arms vary and neither is better.
    The policy keeps its mirror-odd part (sin θ, θ̇) and its mirror-even part (cos θ, bias)
    in separate hidden units; reflecting the even unit turns π into π'.
    """
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1, bias=False)), env="Pendulum-v1")
    with torch.no_grad():
        policy.module[0].weight.copy_(torch.tensor([[0.0, -1.5, -0.4], [0.8, 0.0, 0.0]]))
        policy.module[0].bias.copy_(torch.tensor([0.0, 0.5]))
        policy.module[1].weight.copy_(torch.tensor([[1.0, 1.0]]))
    mirror = rli.ablate(policy, 0, np.array([0.0, 1.0]), alpha=-1.0)
    covered = 0
    for run in range(runs):
        result = rli.compare(policy, "Pendulum-v1", mirror, episodes=20, seed=1000 * run, progress=False)
        assert result.drop != 0  # the arms really differ episode by episode
        covered += result.ci[0] <= 0 <= result.ci[1]
    return covered, runs


def _coverage_is_not_below_95(covered: int, runs: int) -> None:
    from scipy.stats import binomtest

    p_value = binomtest(covered, runs, 0.95, alternative="less").pvalue
    assert p_value > 0.01, f"the CI covered 0 in {covered}/{runs} null comparisons (p = {p_value:.3g} vs 95%)"


def test_null_intervention_ci_covers_zero_fast():
    _coverage_is_not_below_95(*_null_coverage(12))


@pytest.mark.slow
def test_null_intervention_ci_covers_zero_thorough():
    _coverage_is_not_below_95(*_null_coverage(300))
