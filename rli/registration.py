"""rli's gymnasium environments, registered without importing gymnasium before it is needed.

``import rli`` calls :func:`register_when_imported`: if gymnasium is already loaded the ids are
registered at once, otherwise as soon as gymnasium finishes loading (a one-shot import hook), so
``import rli`` stays light and ``gymnasium.make("rli/FormationFlight-v0")`` works either way.
gymnasium 1.x has no plugin entry points; a process that never imports rli names the registering
module in the id instead: ``gymnasium.make("rli.envs:rli/FormationFlight-v0")``.

Example:
    >>> from rli.registration import ENVS
    >>> ENVS["rli/FormationFlight-v0"]
    ('rli.envs.formation:FormationFlightEnv', 400)
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

#: id -> (entry point, max_episode_steps): every environment rli registers, in one place.
ENVS: dict[str, tuple[str, int]] = {
    "rli/FormationFlight-v0": ("rli.envs.formation:FormationFlightEnv", 400),
    "rli/MiniGridDoorKey-v0": ("rli.envs.minigrid_env:make_doorkey", 250),  # needs minigrid only when made
}


def register_envs() -> None:
    """Register every id of :data:`ENVS` not yet in gymnasium's registry (imports gymnasium)."""
    from gymnasium.envs.registration import register, registry

    for env_id, (entry_point, steps) in ENVS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, max_episode_steps=steps)


def register_when_imported() -> None:
    """:func:`register_envs` now if gymnasium is loaded, else right after it loads (gymnasium itself not imported)."""
    if "gymnasium" in sys.modules:
        register_envs()
    elif not any(isinstance(finder, _AfterGymnasium) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterGymnasium())


class _AfterGymnasium:
    """A meta-path finder that finds nothing itself: it wraps gymnasium's loader so that :func:`register_envs` runs
    once gymnasium is loaded."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != "gymnasium":
            return None
        sys.meta_path.remove(self)  # one shot; the other finders locate the package
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)  # type: ignore[assignment]  # a Loader by delegation
        return spec


class _RegisteringLoader:
    """gymnasium's own loader (an importlib loader by delegation), then :func:`register_envs`."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register_envs()

    def __getattr__(self, name: str) -> Any:  # resources, get_source, ... as gymnasium's loader gives them
        return getattr(self._loader, name)
