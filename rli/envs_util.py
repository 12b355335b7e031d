"""Turning what users pass as an environment (an id, a factory, an env) into a gymnasium env."""

from __future__ import annotations

from typing import Any

from rli.errors import RliError


def make_env(env: Any) -> tuple[Any, bool]:
    """``(gymnasium env, owned)`` from an id (``"HalfCheetah-v5"``), a zero-argument factory, or an env itself.

    ``owned`` is true when rli made the env (and so must close it).
    """
    import gymnasium as gym

    if isinstance(env, str):
        try:
            return gym.make(env), True
        except gym.error.Error as err:
            raise RliError(f"cannot make environment {env!r}: {err}") from None
    if isinstance(env, gym.Env):
        return env, False
    if callable(env):
        made = env()
        if not isinstance(made, gym.Env):
            raise RliError(f"the environment factory returned {type(made).__name__}, not a gymnasium.Env")
        return made, True
    raise RliError(f"env must be a gymnasium id, a factory or a gymnasium.Env, not {type(env).__name__}")
