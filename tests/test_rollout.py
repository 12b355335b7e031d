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
