"""Turning what users pass as an environment (an id, a factory, an env) into a gymnasium env.

:func:`resolve_env` is the one resolver of environment names in rli: :func:`rli.evaluate`,
:func:`rli.compare`, :meth:`rli.ObsSet.from_rollouts`, :func:`rli.load_policy`,
:func:`rli.interrogate`, the CLI and the pytest plugin all go through it, so a name that
works in one place works in every other, and a wrong one fails at once, before any work.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rli.errors import RliError

_FORMS = ("a gymnasium id ('CartPole-v1', or 'module:EnvId' to import the module that registers it), "
          "a zero-argument factory returning a gymnasium.Env, or a gymnasium.Env")


@dataclass(frozen=True)
class EnvRef:
    """A resolved environment: how to make it, what to call it, and whether each call makes a fresh one.

    ``factory()`` returns a gymnasium env; ``shareable`` is true when every call builds
    a new one (an id or a factory), so several can step side by side; ``owned`` is true
    when rli makes the env and so must close it (false for an env instance the caller
    passed). ``spec`` is what the caller passed.
    """

    spec: Any
    name: str
    factory: Callable[[], Any]
    shareable: bool
    owned: bool

    def make(self) -> tuple[Any, bool]:
        """``(gymnasium env, owned)``: a new env (or the caller's instance) and whether rli must close it."""
        return self.factory(), self.owned


class _CheckedFactory:
    """A user's env factory whose product is checked, so a wrong one fails here and not deep inside gymnasium."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory

    def __call__(self) -> Any:
        import gymnasium as gym

        made = self.factory()
        if not isinstance(made, gym.Env):
            raise RliError(f"the environment factory returned {type(made).__name__}, not a gymnasium.Env")
        return made


def _the_instance(env: Any) -> Any:
    return env


def resolve_env(env: Any, *, what: str = "env") -> EnvRef:
    """Check an environment spec and say how to make it: the one resolver of environment names in rli.

    ``env`` is a registered gymnasium id (``"CartPole-v1"``, ``"rli/FormationFlight-v0"``),
    ``"module:EnvId"`` (the module is imported first, which registers the id, as
    ``gymnasium.make`` does), a ``gymnasium`` ``EnvSpec``, a zero-argument factory, or a
    ``gymnasium.Env``; an :class:`EnvRef` is returned as it is. Ids are looked up (and
    their modules imported) here, so a misspelt one is an :class:`~rli.RliError` before any
    work starts; a factory's product is checked when it is first called. ``what`` names
    the argument in error messages (e.g. ``"--env"`` or ``"the rli_env ini key"``).

    Example:
        >>> from rli.envs_util import resolve_env
        >>> ref = resolve_env("CartPole-v1")
        >>> ref.name, ref.shareable
        ('CartPole-v1', True)
        >>> resolve_env("gymnasium.envs.classic_control:CartPole-v1").name
        'gymnasium.envs.classic_control:CartPole-v1'
    """
    import gymnasium as gym

    if isinstance(env, EnvRef):
        return env
    if isinstance(env, str):
        _find_spec(env, what)
        return EnvRef(env, env, functools.partial(gym.make, env), shareable=True, owned=True)
    if isinstance(env, gym.envs.registration.EnvSpec):
        return EnvRef(env, env.id, functools.partial(gym.make, env), shareable=True, owned=True)
    if isinstance(env, gym.Env):
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        return EnvRef(env, name, functools.partial(_the_instance, env), shareable=False, owned=False)
    if callable(env):
        return EnvRef(env, getattr(env, "__name__", type(env).__name__), _CheckedFactory(env), shareable=True,
                      owned=True)
    raise RliError(f"{what} must be {_FORMS}; got {type(env).__name__}")


def _find_spec(env: str, what: str) -> Any:
    """The registered spec of ``env`` (importing ``module`` first for ``"module:EnvId"``), or a one-line RliError."""
    import gymnasium as gym

    module, sep, env_id = env.partition(":") if ":" in env else ("", "", env)
    if sep and (not module or not env_id):
        raise RliError(f"{what} {env!r} is not 'module:EnvId' (e.g. 'my_package.envs:MyEnv-v0')")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise RliError(f"{what} {env!r}: cannot import module {module!r} ({err}); install it or add its folder "
                           "to PYTHONPATH") from None
    try:
        return gym.spec(env_id)
    except gym.error.Error as err:
        hint = "" if module else "; if a module registers it, write 'module:EnvId'"
        raise RliError(f"unknown environment {env!r} ({what}): {' '.join(str(err).split())}{hint}") from None


def make_env(env: Any) -> tuple[Any, bool]:
    """``(gymnasium env, owned)`` from an id (``"HalfCheetah-v5"``, ``"module:EnvId"``), a zero-argument factory,
    or an env itself (see :func:`resolve_env`).

    ``owned`` is true when rli made the env (and so must close it).

    Example:
        >>> from rli.envs_util import make_env
        >>> env, owned = make_env("CartPole-v1")
        >>> env.spec.id, owned
        ('CartPole-v1', True)
        >>> env.close()
    """
    import gymnasium as gym

    ref = resolve_env(env)
    try:
        return ref.make()
    except gym.error.Error as err:
        raise RliError(f"cannot make environment {ref.name!r}: {' '.join(str(err).split())}") from None
