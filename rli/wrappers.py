"""Observation wrappers for robustness studies: noise, dropout, delay and negation of chosen sensors.

All randomness comes from the environment's own ``np_random``, so a wrapped episode
reset with seed *s* is reproducible.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rli.errors import RliError


def _indices(env: gym.Env, indices: Sequence[int] | int, what: str) -> np.ndarray:
    shape = env.observation_space.shape
    if shape is None or len(shape) != 1:
        raise RliError(f"{what} needs flat (1-D) observations; this env's are shaped {shape}")
    idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
    if idx.size == 0 or np.any(idx < -shape[0]) or np.any(idx >= shape[0]):
        raise RliError(f"{what}: sensor indices {idx.tolist()} must lie in 0..{shape[0] - 1}")
    return idx % shape[0]


class SensorNoise(gym.ObservationWrapper):
    """Add Gaussian noise (standard deviation ``sigma``) to chosen observation entries.

    Example:
        >>> import gymnasium as gym
        >>> env = SensorNoise(gym.make("CartPole-v1"), indices=[2], sigma=0.1)
        >>> env.reset(seed=0)[0].shape
        (4,)
    """

    def __init__(self, env: gym.Env, indices: Sequence[int] | int, sigma: float) -> None:
        super().__init__(env)
        if not np.isfinite(sigma) or sigma < 0:
            raise RliError(f"sigma must be a finite non-negative number, got {sigma}")
        self.indices, self.sigma = _indices(env, indices, "SensorNoise"), float(sigma)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.array(observation, copy=True)
        out[self.indices] += self.np_random.normal(0.0, self.sigma, size=self.indices.size).astype(out.dtype)
        return out


class SensorDropout(gym.ObservationWrapper):
    """Zero each chosen entry independently with probability ``p`` at every step (a failing sensor)."""

    def __init__(self, env: gym.Env, indices: Sequence[int] | int, p: float) -> None:
        super().__init__(env)
        if not 0.0 <= p <= 1.0:
            raise RliError(f"dropout probability p must lie in [0, 1], got {p}")
        self.indices, self.p = _indices(env, indices, "SensorDropout"), float(p)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.array(observation, copy=True)
        out[self.indices[self.np_random.random(self.indices.size) < self.p]] = 0
        return out


class SensorDelay(gym.Wrapper):
    """Report chosen entries as they were ``steps`` steps ago (the first observation repeats at reset)."""

    def __init__(self, env: gym.Env, indices: Sequence[int] | int, steps: int) -> None:
        super().__init__(env)
        if not isinstance(steps, (int, np.integer)) or steps < 0:
            raise RliError(f"steps must be a non-negative integer, got {steps}")
        self.indices, self.steps = _indices(env, indices, "SensorDelay"), int(steps)
        self._history: deque[np.ndarray] = deque(maxlen=self.steps + 1)

    def _delayed(self, observation: np.ndarray) -> np.ndarray:
        self._history.append(np.array(observation[self.indices], copy=True))
        out = np.array(observation, copy=True)
        out[self.indices] = self._history[0]
        return out

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        observation, info = self.env.reset(**kwargs)
        self._history.clear()
        for _ in range(self.steps):
            self._history.append(np.array(observation[self.indices], copy=True))
        return self._delayed(observation), info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self._delayed(observation), reward, terminated, truncated, info


class NegateSensors(gym.ObservationWrapper):
    """Negate chosen observation entries (sensor polarity inversion during rollouts).

    Example:
        >>> import gymnasium as gym
        >>> plain = gym.make("CartPole-v1").reset(seed=0)[0]
        >>> flipped = NegateSensors(gym.make("CartPole-v1"), [0, 2]).reset(seed=0)[0]
        >>> bool((flipped[[0, 2]] == -plain[[0, 2]]).all() and (flipped[[1, 3]] == plain[[1, 3]]).all())
        True
    """

    def __init__(self, env: gym.Env, indices: Sequence[int] | int) -> None:
        super().__init__(env)
        self.indices = _indices(env, indices, "NegateSensors")
        space = env.observation_space
        if isinstance(space, gym.spaces.Box):
            low, high = space.low.copy(), space.high.copy()
            low[self.indices], high[self.indices] = -space.high[self.indices], -space.low[self.indices]
            self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.array(observation, copy=True)
        out[self.indices] = -out[self.indices]
        return out
