"""Observation wrappers for robustness studies: noise, dropout, delay and negation of chosen sensors.

All randomness comes from the environment's own ``np_random``, so a wrapped episode
reset with seed *s* is reproducible. The chosen entries are ``sensors`` (indices into the
flat observation), as in :func:`rli.negate_sensors`; ``indices=`` (and the ``.indices``
attribute) are their deprecated old names.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rli import checks
from rli.deprecation import renamed_arguments, warn_deprecated
from rli.errors import RliError


def _indices(env: gym.Env, sensors: Sequence[int] | int, what: str) -> np.ndarray:
    shape = env.observation_space.shape
    if shape is None or len(shape) != 1:
        raise RliError(f"{what} needs flat (1-D) observations; this env's are shaped {shape}")
    idx = np.atleast_1d(np.asarray(sensors, dtype=np.int64))
    if idx.size == 0 or np.any(idx < -shape[0]) or np.any(idx >= shape[0]):
        raise RliError(f"{what}: sensor indices {idx.tolist()} must lie in 0..{shape[0] - 1}")
    return idx % shape[0]


class _ChosenSensors:
    """The wrappers' chosen entries, ``sensors``, and their deprecated old name ``indices``."""

    sensors: np.ndarray

    @property
    def indices(self) -> np.ndarray:
        """Deprecated name of ``sensors``."""
        warn_deprecated(f"{type(self).__name__}.indices is renamed .sensors; .indices will stop working in the next "
                        "release")
        return self.sensors


class SensorNoise(_ChosenSensors, gym.ObservationWrapper):
    """Add Gaussian noise (standard deviation ``sigma``) to chosen observation entries.

    Example:
        >>> import gymnasium as gym
        >>> env = SensorNoise(gym.make("CartPole-v1"), sensors=[2], sigma=0.1)
        >>> env.reset(seed=0)[0].shape
        (4,)
    """

    @renamed_arguments(indices="sensors")
    def __init__(self, env: gym.Env, sensors: Sequence[int] | int, sigma: float) -> None:
        super().__init__(env)
        sigma = checks.real(sigma, "sigma", minimum=0.0, hint=" (the noise's standard deviation)")
        self.sensors, self.sigma = _indices(env, sensors, "SensorNoise"), float(sigma)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.array(observation, copy=True)
        out[self.sensors] += self.np_random.normal(0.0, self.sigma, size=self.sensors.size).astype(out.dtype)
        return out


class SensorDropout(_ChosenSensors, gym.ObservationWrapper):
    """Zero each chosen entry independently with probability ``p`` at every step (a failing sensor)."""

    @renamed_arguments(indices="sensors")
    def __init__(self, env: gym.Env, sensors: Sequence[int] | int, p: float) -> None:
        super().__init__(env)
        if not 0.0 <= p <= 1.0:
            raise RliError(f"dropout probability p must lie in [0, 1], got {p}")
        self.sensors, self.p = _indices(env, sensors, "SensorDropout"), float(p)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.array(observation, copy=True)
        out[self.sensors[self.np_random.random(self.sensors.size) < self.p]] = 0
        return out


class SensorDelay(_ChosenSensors, gym.Wrapper):
    """Report chosen entries as they were ``steps`` steps ago (the first observation repeats at reset)."""

    @renamed_arguments(indices="sensors")
    def __init__(self, env: gym.Env, sensors: Sequence[int] | int, steps: int) -> None:
        super().__init__(env)
        if not isinstance(steps, (int, np.integer)) or steps < 0:
            raise RliError(f"steps must be a non-negative integer, got {steps}")
        self.sensors, self.steps = _indices(env, sensors, "SensorDelay"), int(steps)
        self._history: deque[np.ndarray] = deque(maxlen=self.steps + 1)

    def _delayed(self, observation: np.ndarray) -> np.ndarray:
        self._history.append(np.array(observation[self.sensors], copy=True))
        out = np.array(observation, copy=True)
        out[self.sensors] = self._history[0]
        return out

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        observation, info = self.env.reset(**kwargs)
        self._history.clear()
        for _ in range(self.steps):
            self._history.append(np.array(observation[self.sensors], copy=True))
        return self._delayed(observation), info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self._delayed(observation), reward, terminated, truncated, info


class NegateSensors(_ChosenSensors, gym.ObservationWrapper):
    """Negate chosen observation entries (sensor polarity inversion during rollouts).

    Example:
        >>> import gymnasium as gym
        >>> plain = gym.make("CartPole-v1").reset(seed=0)[0]
        >>> flipped = NegateSensors(gym.make("CartPole-v1"), [0, 2]).reset(seed=0)[0]
        >>> bool((flipped[[0, 2]] == -plain[[0, 2]]).all() and (flipped[[1, 3]] == plain[[1, 3]]).all())
        True
    """

    @renamed_arguments(indices="sensors")
    def __init__(self, env: gym.Env, sensors: Sequence[int] | int) -> None:
        super().__init__(env)
        self.sensors = _indices(env, sensors, "NegateSensors")
        space = env.observation_space
        if isinstance(space, gym.spaces.Box):
            low, high = space.low.copy(), space.high.copy()
            low[self.sensors], high[self.sensors] = -space.high[self.sensors], -space.low[self.sensors]
            self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.array(observation, copy=True)
        out[self.sensors] = -out[self.sensors]
        return out
