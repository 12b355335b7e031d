"""rl_interrogate's ``NoisyObservationWrapper`` (``rl_interrogate.env_wrappers``), observation for observation.

The wrapper keeps its own ``np.random.default_rng(seed)`` and, at every reset and step,
draws one normal number (the lateral noise) and then one uniform number (whether the
upwash sensor drops out), exactly as the reference does, so the same seed gives the same
observations. That is also why it is not built from :mod:`rli.wrappers`, whose
``SensorNoise``, ``SensorDropout`` and ``SensorDelay`` draw from the environment's own
``np_random`` (reproducible per episode seed) and repeat the first observation at reset
instead of reporting zeros for the delayed block.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from rli.errors import RliError
from rli.tensors import to_numpy

__all__ = ["NoisyObservationWrapper"]


class NoisyObservationWrapper(gymnasium.Wrapper):
    """Sensor noise and delay for formation-flight observations, identical to ``rl_interrogate``'s.

    At reset and at every step, on each observation (a copy, float32):

    1. entries 9–11 (follower minus leader position) are replaced by their values
       ``rel_lead_delay`` observations earlier (zeros until that many have been seen
       since the last reset);
    2. entry 15 (lateral position) gets Gaussian noise of standard deviation ``lateral_noise_std``;
    3. entry 12 (upwash sensor) is zeroed with probability ``sensor_zero_prob``.

    One noise value and one dropout draw per call, shared by a batch of one. The random
    generator is seeded once, at construction (``reset(seed=...)`` seeds only the wrapped
    environment), so episodes differ from one another and a new wrapper replays them.

    Rigorous equivalent: ``rli.wrappers.SensorNoise(env, [15], sigma)``,
    ``rli.wrappers.SensorDropout(env, [12], p)`` and ``rli.wrappers.SensorDelay(env, [9, 10, 11], steps)``
    (randomness from the episode seed), evaluated with ``rli.compare`` — paired episodes with a CI.

    Example:
        >>> import gymnasium as gym, numpy as np
        >>> from rli.compat import NoisyObservationWrapper
        >>> class Still(gym.Env):
        ...     observation_space = gym.spaces.Box(-np.inf, np.inf, (28,), np.float32)
        ...     action_space = gym.spaces.Box(-1, 1, (4,), np.float32)
        ...     def reset(self, *, seed=None, options=None):
        ...         return np.arange(28, dtype=np.float32), {}
        ...     def step(self, action):
        ...         return np.arange(28, dtype=np.float32), 0.0, False, False, {}
        >>> env = NoisyObservationWrapper(Still(), sensor_zero_prob=0.0, rel_lead_delay=1)
        >>> first, _ = env.reset()
        >>> second = env.step(np.zeros(4))[0]
        >>> first[9:12].tolist(), second[9:12].tolist(), bool(second[15] != 15.0)
        ([0.0, 0.0, 0.0], [9.0, 10.0, 11.0], True)
    """

    UPWASH_IDX: int = 12
    REL_LEAD_SLICE: slice = slice(9, 12)
    LATERAL_IDX: int = 15

    def __init__(self, env: gymnasium.Env, lateral_noise_std: float = 0.05, sensor_zero_prob: float = 0.10,
                 rel_lead_delay: int = 2, seed: int = 0) -> None:
        super().__init__(env)
        if rel_lead_delay < 1:
            raise RliError(f"rel_lead_delay must be at least 1 step, got {rel_lead_delay} (rl_interrogate fails at the "
                           "first reset then); for no delay leave the wrapper out or use rli.wrappers.SensorDelay(env, "
                           "[9, 10, 11], 0)")
        self.lateral_noise_std = lateral_noise_std
        self.sensor_zero_prob = sensor_zero_prob
        self.rel_lead_delay = rel_lead_delay
        self._rng = np.random.default_rng(seed)
        self._clear_delay()

    def _clear_delay(self) -> None:
        width = self.REL_LEAD_SLICE.stop - self.REL_LEAD_SLICE.start
        self._delay_buffer = np.zeros((self.rel_lead_delay, width), dtype=np.float32)
        self._buf_ptr = 0

    def reset(self, **kwargs: Any) -> Any:
        """Reset the wrapped env and the delay (zeros); the first observation is perturbed too."""
        self._clear_delay()
        result = self.env.reset(**kwargs)
        if isinstance(result, tuple):
            return (self._apply_noise(_float32_copy(result[0])), *result[1:])
        return self._apply_noise(_float32_copy(result))

    def step(self, action: Any) -> tuple:
        """Step the wrapped env and perturb the observation; the rest of its result passes through."""
        result = self.env.step(action)
        return (self._apply_noise(_float32_copy(result[0])), *result[1:])

    def _apply_noise(self, obs: np.ndarray) -> np.ndarray:
        """Delay entries 9–11, add lateral noise at 15, maybe zero 12 — in place on ``obs``, which is returned."""
        slot = self._buf_ptr
        delayed = self._delay_buffer[slot].copy()
        self._delay_buffer[slot] = obs[..., self.REL_LEAD_SLICE]
        self._buf_ptr = (slot + 1) % self.rel_lead_delay
        obs[..., self.REL_LEAD_SLICE] = delayed
        obs[..., self.LATERAL_IDX] += self._rng.normal(0, self.lateral_noise_std)
        if self._rng.random() < self.sensor_zero_prob:
            obs[..., self.UPWASH_IDX] = 0.0
        return obs


def _float32_copy(obs: Any) -> np.ndarray:
    """A writable float32 copy of an observation (numpy array, sequence or torch tensor)."""
    return np.array(to_numpy(obs), dtype=np.float32, copy=True)
