"""Observation wrappers: noise, dropout, delay, negation; seeded and validated."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rli
from rli.wrappers import NegateSensors, SensorDelay, SensorDropout, SensorNoise


def _trajectory(env: gym.Env, seed: int, steps: int = 199) -> np.ndarray:
    """Pendulum never terminates, so every step is valid."""
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        obs, *_ = env.step(np.array([0.5], dtype=np.float32))
        out.append(obs)
    return np.array(out)


def test_noise_touches_only_chosen_indices_and_is_seeded():
    plain = _trajectory(gym.make("Pendulum-v1"), 0)
    noisy = _trajectory(SensorNoise(gym.make("Pendulum-v1"), [1], sigma=0.5), 0)
    again = _trajectory(SensorNoise(gym.make("Pendulum-v1"), [1], sigma=0.5), 0)
    np.testing.assert_array_equal(noisy, again)
    np.testing.assert_array_equal(noisy[:, [0, 2]], plain[:, [0, 2]])
    assert 0.4 < np.std(noisy[:, 1] - plain[:, 1]) < 0.6  # 200 draws: sd of the estimate ≈ 0.025


def test_dropout_zeroes_with_the_asked_rate():
    obs = _trajectory(SensorDropout(gym.make("Pendulum-v1"), [0, 1], p=0.3), 1)
    assert 0.24 < np.mean(obs[:, [0, 1]] == 0) < 0.36  # 400 draws: sd of the rate ≈ 0.023
    assert np.all(_trajectory(SensorDropout(gym.make("Pendulum-v1"), 2, p=1.0), 0)[:, 2] == 0)


def test_delay_reports_old_values():
    plain = _trajectory(gym.make("Pendulum-v1"), 0)
    delayed = _trajectory(SensorDelay(gym.make("Pendulum-v1"), [1, 2], steps=3), 0)
    np.testing.assert_array_equal(delayed[3:, 1:], plain[:-3, 1:])
    np.testing.assert_array_equal(delayed[:3, 1:], np.repeat(plain[:1, 1:], 3, axis=0))
    np.testing.assert_array_equal(delayed[:, 0], plain[:, 0])


def test_negation_flips_values_and_bounds():
    env = NegateSensors(gym.make("Pendulum-v1"), [2])
    obs, _ = env.reset(seed=0)
    plain, _ = gym.make("Pendulum-v1").reset(seed=0)
    assert obs[2] == -plain[2] and env.observation_space.contains(obs)


@pytest.mark.parametrize("make", [
    lambda env: SensorNoise(env, [9], 0.1),
    lambda env: SensorNoise(env, [0], -1.0),
    lambda env: SensorDropout(env, [0], 1.5),
    lambda env: SensorDelay(env, [0], -1),
    lambda env: NegateSensors(env, []),
])
def test_bad_wrapper_arguments(make):
    with pytest.raises(rli.RliError):
        make(gym.make("CartPole-v1"))
