"""``rli/MiniGridDoorKey-v0``: MiniGrid's DoorKey-5x5 with image observations and ground-truth labels.

A real image-observation benchmark nobody here wrote (MiniGrid, Farama). The agent must
pick up a key, open a locked door in a dividing wall and reach the green goal in a 5×5
room; reward ``1 − 0.9·steps/250`` on success, 0 on timeout (250 steps). Observations are
minigrid's partial egocentric view through its ``ImgObsWrapper``: 7×7 cells × (object,
colour, state) codes, ``uint8``, the agent at the bottom-middle cell (column 3, row 6)
looking "up" the image, with what it carries drawn in its own cell. The partial view is
the standard MiniGrid observation, and it makes the probe claims non-trivial: the agent's
direction and its distance to the goal are not written in any pixel (in the fully
observable encoding the direction is a pixel value), so they must be inferred from the
layout seen.

Every step's ``info`` carries the labels, computed from the environment's own state
(:func:`doorkey_labels`), so :meth:`rli.ObsSet.from_rollouts` records them by default:
``agent_dir`` (0 east, 1 south, 2 west, 3 north), ``agent_x``, ``agent_y``,
``goal_distance`` (Manhattan, in cells), ``has_key``, ``door_open``, and where the key and
the goal appear in the image (``key_view_x``/``key_view_y``, ``goal_view_x``/``goal_view_y``:
column and row of the 7×7 view, −1 when not visible; a carried key is in the agent's cell).
:func:`region_masks` turns these into per-frame cell masks for attribution;
:func:`minigrid_obs` rolls a policy out and returns the labelled :class:`~rli.ObsSet`.

``minigrid`` is an optional dependency (``pip install "rli[minigrid]"``); importing
``rli`` or ``rli.envs`` does not import it.

Example:
    >>> import gymnasium as gym, rli
    >>> env = gym.make("rli/MiniGridDoorKey-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype.name, info["has_key"], info["door_open"]
    ((7, 7, 3), 'uint8', 0.0, 0.0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rli.errors import RliError

DOORKEY = "rli/MiniGridDoorKey-v0"
VIEW = 7
AGENT_CELL = (VIEW // 2, VIEW - 1)  # (column, row) of the agent in its own view
LABELS = ("agent_dir", "agent_x", "agent_y", "goal_distance", "has_key", "door_open",
          "key_view_x", "key_view_y", "goal_view_x", "goal_view_y")
_UNSEEN = 0  # minigrid's OBJECT_TO_IDX["unseen"]
_INSTALL = 'the MiniGrid benchmark needs the minigrid package: pip install "rli[minigrid]"'


def _minigrid() -> Any:
    try:
        import minigrid.envs
        import minigrid.wrappers
    except ImportError:
        raise RliError(_INSTALL) from None
    return minigrid


def make_doorkey(size: int = 5, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """DoorKey-``size``×``size`` with :class:`DoorKeyLabels` and minigrid's ``ImgObsWrapper`` (gymnasium entry point).

    Example:
        >>> make_doorkey().observation_space.shape
        (7, 7, 3)
    """
    if not isinstance(size, int) or size < 5:
        raise RliError(f"size must be an int ≥ 5 (the room's side in cells, walls included), not {size!r}")
    minigrid = _minigrid()
    base = minigrid.envs.DoorKeyEnv(size=size, render_mode=render_mode, **kwargs)
    return minigrid.wrappers.ImgObsWrapper(DoorKeyLabels(base))


def doorkey_labels(env: Any, image: np.ndarray | None = None) -> dict[str, float]:
    """The ground-truth labels of a DoorKey environment's current state (``env`` or any wrapper of it).

    Positions come from the environment's state; whether the key or goal cell is hidden
    behind a wall is read from the encoded view ``image`` when given (a hidden cell is
    drawn as "unseen"), else from minigrid's visibility mask.

    Example:
        >>> env = make_doorkey()
        >>> _ = env.reset(seed=0)
        >>> sorted(doorkey_labels(env)) == sorted(LABELS)
        True
    """
    base = env.unwrapped
    if not hasattr(base, "agent_pos") or not hasattr(base, "grid") or base.grid is None:
        raise RliError(f"env must be a MiniGrid environment after reset(), not {type(base).__name__}; "
                       "call env.reset() first")
    ax, ay = (int(v) for v in base.agent_pos)
    goal = key = door = None
    for x in range(base.grid.width):
        for y in range(base.grid.height):
            cell = base.grid.get(x, y)
            kind = getattr(cell, "type", None)
            if kind == "goal":
                goal = (x, y)
            elif kind == "key":
                key = (x, y)
            elif kind == "door":
                door = cell
    if goal is None or door is None:
        raise RliError(f"env must be a DoorKey environment (a goal and a door in its grid); "
                       f"{type(base).__name__} has {'no goal' if goal is None else 'no door'}")
    has_key = getattr(base.carrying, "type", None) == "key"
    visible = image[:, :, 0] != _UNSEEN if image is not None else base.gen_obs_grid()[1]
    key_view = AGENT_CELL if has_key else _view_cell(base, key, visible)
    goal_view = _view_cell(base, goal, visible)
    return {
        "agent_dir": float(base.agent_dir), "agent_x": float(ax), "agent_y": float(ay),
        "goal_distance": float(abs(ax - goal[0]) + abs(ay - goal[1])),
        "has_key": float(has_key), "door_open": float(door.is_open),
        "key_view_x": float(key_view[0]), "key_view_y": float(key_view[1]),
        "goal_view_x": float(goal_view[0]), "goal_view_y": float(goal_view[1]),
    }


def _view_cell(base: Any, cell: tuple[int, int] | None, visible: np.ndarray) -> tuple[int, int]:
    """Column and row of a world cell in the agent's view, or (−1, −1) when it is outside it or hidden."""
    if cell is None:
        return (-1, -1)
    where = base.relative_coords(*cell)
    if where is None or not visible[where[0], where[1]]:
        return (-1, -1)
    return (int(where[0]), int(where[1]))


class DoorKeyLabels(gym.Wrapper):
    """Adds :func:`doorkey_labels` of the state reached to ``info`` at every ``reset`` and ``step``."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, **doorkey_labels(self.env, obs["image"])}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, **doorkey_labels(self.env, obs["image"])}


def region_masks(obs: Any, which: str | tuple[str, ...] = ("key", "goal")) -> np.ndarray:
    """Boolean ``(n, 7, 7)`` masks (column, row) of the cells where ``which`` (``"key"``, ``"goal"``) appear.

    ``obs`` is an :class:`~rli.ObsSet` with the labels of :func:`minigrid_obs`. A frame in
    which none of them is visible has an empty mask.

    Example:
        >>> import rli, numpy as np
        >>> obs = rli.ObsSet(np.zeros((1, 7, 7, 3), np.uint8), labels={"key_view_x": [3.0], "key_view_y": [6.0],
        ...                  "goal_view_x": [-1.0], "goal_view_y": [-1.0]})
        >>> np.argwhere(region_masks(obs)[0]).tolist()
        [[3, 6]]
    """
    names = (which,) if isinstance(which, str) else tuple(which)
    bad = [name for name in names if name not in ("key", "goal")]
    if bad or not names:
        raise RliError(f"which must be 'key', 'goal' or both, not {which!r}")
    labels: Any = getattr(obs, "labels", None) or {}
    missing = [f"{name}_view_{axis}" for name in names for axis in "xy" if f"{name}_view_{axis}" not in labels]
    if missing:
        raise RliError(f"obs lacks the labels {missing}; build it with rli.envs.minigrid_env.minigrid_obs")
    n = len(obs)
    masks = np.zeros((n, VIEW, VIEW), dtype=bool)
    for name in names:
        x = np.asarray(labels[f"{name}_view_x"]).astype(np.int64)
        y = np.asarray(labels[f"{name}_view_y"]).astype(np.int64)
        seen = (x >= 0) & (y >= 0)
        masks[np.flatnonzero(seen), x[seen], y[seen]] = True
    return masks


def minigrid_obs(checkpoint_or_policy: Any, episodes: int, seed: int, *, n: int | None = None) -> Any:
    """Observations visited by a policy on ``rli/MiniGridDoorKey-v0``, with :data:`LABELS`, ``episode`` and ``step``.

    ``checkpoint_or_policy`` is a path (loaded with :func:`rli.load_policy`) or a
    :class:`~rli.Policy`. Episode *i* is reset with seed ``seed + i``; every step is kept
    unless ``n`` asks for fewer (spread evenly, as :meth:`rli.ObsSet.from_rollouts` does).

    Example:
        >>> import rli
        >>> policy = rli.load_policy("examples/checkpoints/minigrid_doorkey_ppo_seed0.zip")
        >>> obs = minigrid_obs(policy, episodes=2, seed=0)
        >>> obs.obs.shape[1:], sorted(set(obs.labels["episode"].tolist()))
        ((7, 7, 3), [0, 1])
    """
    import rli

    _minigrid()
    policy = (rli.load_policy(checkpoint_or_policy) if isinstance(checkpoint_or_policy, (str, Path))
              else checkpoint_or_policy)
    if not isinstance(policy, rli.Policy):
        raise RliError(f"checkpoint_or_policy must be a checkpoint path or an rli.Policy, "
                       f"not {type(checkpoint_or_policy).__name__}")
    steps = gym.spec(DOORKEY).max_episode_steps or 250
    total = n if n is not None else int(episodes) * steps if isinstance(episodes, int) else 1
    return rli.ObsSet.from_rollouts(DOORKEY, policy, n=total, seed=seed, episodes=episodes)
