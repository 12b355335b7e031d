"""Small environments for the zoo: a goal-conditioned Dict-observation env and an image env (channels first and last).

Importing this module registers them with gymnasium, so ``gym.make("tests.zoo.envs:ZooImage-v0")`` (gymnasium's
``module:EnvId`` form, which imports the module first) and, after an import, ``gym.make("ZooImage-v0")`` both work.
Every quantity an episode depends on comes from the env's seeded ``np_random``, and the dynamics are smooth and
non-chaotic, so two runs of the same deterministic policy from the same seed agree to rounding.

Example:
    >>> import gymnasium as gym, tests.zoo.envs
    >>> env = gym.make("tests.zoo.envs:ZooImage-v0")
    >>> env.reset(seed=0)[0].shape, env.observation_space.dtype
    ((1, 36, 36), dtype('uint8'))
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

IMAGE_SIZE = 36
SQUARE = 6
GOAL_HORIZON = 25
IMAGE_HORIZON = 20
FLASH_PROBABILITY = 1 / 8


class ZooGoal(gym.Env):
    """A point mass on a plane that should reach a goal: ``Dict(observation, achieved_goal, desired_goal)``.

    ``observation`` is (x, y, vx, vy), ``achieved_goal`` the position, ``desired_goal`` the goal (as in
    gymnasium-robotics' goal-conditioned envs). The action is an acceleration in [-1, 1]²; the reward is minus the
    distance to the goal; an episode lasts ``GOAL_HORIZON`` steps. ``info["distance"]`` is the distance to the goal.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 — gym.Env declares metadata an instance attribute: a ClassVar fails mypy

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        box2 = spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.observation_space = spaces.Dict({
            "observation": spaces.Box(-2.0, 2.0, (4,), np.float32), "achieved_goal": box2, "desired_goal": box2})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._pos = np.zeros(2)
        self._vel = np.zeros(2)
        self._goal = np.zeros(2)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": np.r_[self._pos, self._vel].astype(np.float32),
                "achieved_goal": self._pos.astype(np.float32), "desired_goal": self._goal.astype(np.float32)}

    def _info(self) -> dict[str, float]:
        return {"distance": float(np.linalg.norm(self._pos - self._goal))}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-1, 1, 2)
        self._vel = np.zeros(2)
        self._goal = self.np_random.uniform(-1, 1, 2)
        self._t = 0
        return self._obs(), self._info()

    def render(self) -> np.ndarray:
        """An RGB frame: the point (white) and the goal (red) on a 32×32 grid."""
        frame = np.zeros((32, 32, 3), np.uint8)
        for where, colour in ((self._goal, (255, 0, 0)), (self._pos, (255, 255, 255))):
            row, col = np.clip(((np.asarray(where) + 2) / 4 * 31).astype(int), 0, 31)
            frame[row, col] = colour
        return frame

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        accel = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self._vel = np.clip(0.8 * self._vel + 0.1 * accel, -1.0, 1.0)
        self._pos = np.clip(self._pos + 0.1 * self._vel, -2.0, 2.0)
        self._t += 1
        reward = -float(np.linalg.norm(self._pos - self._goal))
        return self._obs(), reward, False, self._t >= GOAL_HORIZON, self._info()


class ZooImage(gym.Env):
    """A white square on a black frame, to be brought to the centre column: uint8 images, ``Discrete(3)`` actions.

    Channels first, ``Box(0, 255, (1, 36, 36), uint8)`` (grey). Actions move the square left, not at all, or right by
    two pixels; the reward is minus the distance of its column from the centre (in frame widths); an episode lasts
    ``IMAGE_HORIZON`` steps. ``info["col"]`` and ``info["row"]`` give the square's position. Most pixels are black in
    every frame, and a 2×2 warning light in the top-left corner flashes for one frame in about one episode in eight
    (``FLASH_PROBABILITY``): constant and nearly constant input features, as in real image envs.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 — gym.Env declares metadata an instance attribute: a ClassVar fails mypy
    channels_last = False
    channels = 1

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        shape = (IMAGE_SIZE, IMAGE_SIZE, self.channels) if self.channels_last else (self.channels, IMAGE_SIZE, IMAGE_SIZE)
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(3)
        self._row = self._col = self._t = 0
        self._flash, self._flash_at = False, -1

    def _obs(self) -> np.ndarray:
        frame = np.zeros((self.channels, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        for c in range(self.channels):
            frame[c, self._row:self._row + SQUARE, self._col:self._col + SQUARE] = 255 - 60 * c
        if self._flash:
            frame[:, :2, :2] = 255
        return np.ascontiguousarray(frame.transpose(1, 2, 0)) if self.channels_last else frame

    def _info(self) -> dict[str, float]:
        return {"col": float(self._col), "row": float(self._row)}

    def render(self) -> np.ndarray:
        """The observation as an RGB frame (height, width, 3)."""
        frame = self._obs() if self.channels_last else self._obs().transpose(1, 2, 0)
        return np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._row = int(self.np_random.integers(0, IMAGE_SIZE - SQUARE + 1))
        self._col = int(self.np_random.integers(0, IMAGE_SIZE - SQUARE + 1))
        self._t = 0
        self._flash_at = int(self.np_random.integers(IMAGE_HORIZON)) if self.np_random.random() < FLASH_PROBABILITY else -1
        self._flash = self._flash_at == 0
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._col = int(np.clip(self._col + 2 * (int(action) - 1), 0, IMAGE_SIZE - SQUARE))
        self._t += 1
        self._flash = self._t == self._flash_at
        reward = -abs(self._col - (IMAGE_SIZE - SQUARE) / 2) / IMAGE_SIZE
        return self._obs(), reward, False, self._t >= IMAGE_HORIZON, self._info()


class ZooImageLast(ZooImage):
    """:class:`ZooImage` in colour, channels last: ``Box(0, 255, (36, 36, 3), uint8)``."""

    channels_last = True
    channels = 3


def register() -> None:
    """Register ``ZooGoal-v0``, ``ZooImage-v0`` and ``ZooImageLast-v0`` with gymnasium (idempotent)."""
    for env_id, cls in (("ZooGoal-v0", ZooGoal), ("ZooImage-v0", ZooImage), ("ZooImageLast-v0", ZooImageLast)):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=f"{__name__}:{cls.__name__}")


register()
