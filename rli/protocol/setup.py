"""What to interrogate: the policy, its card, each setting and where it came from, the target and the layer.

Each setting is the argument's, else the card's (``<stem>.json`` beside the checkpoint),
else inferred or a default, and :class:`Setup` records which (``sources``). The
functions here check names before any work and collect the observations the policy
visits; :func:`rli.interrogate` and ``rli probe`` share them.

Example:
    >>> import torch.nn as nn, rli
    >>> from rli.protocol.setup import choose_layer, resolve_setup
    >>> setup = resolve_setup(rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))), False, {})
    >>> choose_layer(setup).index, setup.sources["layer"]
    (1, 'default')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rli.envs_util import make_env, resolve_env
from rli.errors import RliError
from rli.observations import ObsSet, numeric_info
from rli.policy import Layer, Policy
from rli.protocol.cards import CARD_FIELDS, card_settings, describe_obs, load_obs, read_card
from rli.targets import check_target_name, obs_entry, resolve_target


@dataclass(frozen=True)
class Setup:
    """The loaded policy, its card file (``None`` without one), the settings and where each came from.

    ``settings`` and ``sources`` are filled in as the run settles them (``"argument"``,
    ``"card"``, ``"default"``, ``"inferred"``).
    """

    policy: Policy
    card: Path | None
    settings: dict[str, Any]
    sources: dict[str, str]


def resolve_setup(policy: Any, trust: bool, given: dict[str, Any]) -> Setup:
    """Read the policy's card, settle each setting (argument, else card; inferred/default later) and load the policy.

    A policy file is loaded with the environment, so a plain torch module gets its
    observation and action spaces from it.
    """
    from rli.loading import load_policy

    source = policy.source if isinstance(policy, Policy) else str(policy)
    card_file = Path(source).with_suffix(".json") if source else None
    card = read_card(source) if source and Path(source).is_file() else None
    from_card = card_settings(card, where=str(card_file)) if card is not None else {}
    settings: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in CARD_FIELDS:
        if given.get(key) is not None:
            settings[key], sources[key] = given[key], "argument"
        elif key in from_card:
            settings[key], sources[key] = from_card[key], "card"
    if not isinstance(policy, Policy):
        policy = load_policy(policy, env=settings.get("env"), trust=trust)
    return Setup(policy, card_file if card is not None else None, settings, sources)


def need_env(setup: Setup, why: str) -> Any:
    """The environment setting, checked by :func:`rli.envs_util.resolve_env` (ids looked up, modules imported)
    before any work; a gymnasium.Env instance is refused (the protocol runs several envs side by side)."""
    env = setup.settings.get("env")
    if env is None:
        name = setup.policy.source or "given"
        card = f"its card {setup.card} names none" if setup.card else "it has no card (<stem>.json) naming one"
        raise RliError(f"no environment: {why}, but the policy {name} was given without one and {card}; "
                       "pass env= / --env (a gymnasium id such as 'CartPole-v1')")
    where = "the card's env" if setup.sources.get("env") == "card" else "env"
    if not resolve_env(env, what=where).shareable:
        raise RliError(f"{where} is a gymnasium.Env instance, but the protocol steps several environments side "
                       "by side: pass its id or a factory (e.g. lambda: MyWrapper(gym.make(...)))")
    return env


def choose_layer(setup: Setup) -> Layer:
    """The layer of the protocol's steps (the argument's or the card's, else :attr:`rli.Policy.default_layer`, the
    last hidden layer of the actor trunk), checked and recorded in ``settings`` (index, or name off the trunk)."""
    settings = setup.settings
    if "layer" in settings:
        chosen = setup.policy.layer(settings["layer"])
    else:
        chosen, setup.sources["layer"] = setup.policy.default_layer, "default"
    settings["layer"] = chosen.index if chosen.index is not None else chosen.name
    return chosen


def step_obs(setup: Setup, step: str, trust: bool) -> tuple[ObsSet, str] | None:
    """The observations given for a step (``"probe"`` or ``"polarity"``) and their description; ``None`` if none.

    Paths from the card are relative to the card; paths given as arguments to the current directory.
    """
    key = f"{step}_obs"
    spec = setup.settings.get(key)
    if spec is None:
        return None
    card = setup.card if setup.sources[key] == "card" else None
    obs = load_obs(spec, base=Path(".") if card is None else card.parent, trust=trust)
    return obs, describe_obs(spec, obs)


def check_names(setup: Setup, trust: bool, *, what: str = "target") -> tuple[ObsSet, str] | None:
    """Check the sensors and the target name (against the given probe observations, or the observation size)
    before any work → the given probe observations and their description (``None`` if none were given).

    ``what`` names the target in messages (``"--target"`` for the command line).
    """
    settings = setup.settings
    size = int(np.prod(setup.policy.obs_shape))
    if settings.get("sensors") is not None and not all(-size <= int(i) < size for i in settings["sensors"]):
        raise RliError(f"sensors {settings['sensors']} must be observation indices 0..{size - 1}")
    given = step_obs(setup, "probe", trust)
    if "target" in settings:
        if not isinstance(settings["target"], str):
            raise RliError(f"{what} must be a label name or 'obs[I]' (the protocol's steps use several observation "
                           f"sets, so give the values as a label of each), not {type(settings['target']).__name__}")
        check_target_name(settings["target"], size, what=what)
        if given is not None:
            with_target(given[0], settings["target"], what=f"the probe observations ({given[1]})")
    return given


def visited_obs(setup: Setup, env: Any, *, n: int, seed: int, episodes: int) -> tuple[ObsSet, str]:
    """``n`` observations the policy visits, spread over ``episodes`` whole episodes from seed ``seed``, and their
    description (:meth:`rli.ObsSet.from_rollouts`)."""
    rollouts = ObsSet.from_rollouts(env, setup.policy, n=n, seed=seed, episodes=episodes)
    name = env if isinstance(env, str) else resolve_env(env).name
    return rollouts, (f"{len(rollouts):,} observations visited by the policy in {name}, spread over {episodes} "
                      f"episodes (seeds {seed}..{seed + episodes - 1})")


def settle_target(setup: Setup, env: Any, rollouts: ObsSet, seed: int) -> str:
    """The target setting; when none was given, inferred from the environment (:func:`infer_target`) and recorded so."""
    if "target" not in setup.settings:
        setup.settings["target"], setup.sources["target"] = infer_target(env, rollouts, seed), "inferred"
    return str(setup.settings["target"])


def with_target(obs: ObsSet, name: str, *, what: str = "the observations") -> ObsSet:
    """``obs`` carrying the label ``name``; ``"obs[I]"`` adds observation entry I as that label when it is missing.

    Names are resolved by :func:`rli.targets.resolve_target`, as in :func:`rli.probe`.

    Example:
        >>> import numpy as np, rli
        >>> obs = rli.protocol.with_target(rli.ObsSet(np.arange(6.0).reshape(3, 2)), "obs[1]")
        >>> obs.labels["obs[1]"].tolist()
        [1.0, 3.0, 5.0]
    """
    if not isinstance(name, str):
        raise RliError(f"the protocol's target is a label name or 'obs[I]', not {type(name).__name__}; its steps "
                       "use several observation sets, so give the values as a label of each (ObsSet.with_labels)")
    if name in obs.labels:
        return obs
    flat = int(np.prod(obs.obs.shape[1:]))
    index = obs_entry(name)
    if index is None or index >= flat:
        known = ", ".join(sorted(obs.labels)) or "none"
        raise RliError(f"{what} have no label {name!r}; their labels: {known}; or name an observation entry "
                       f"obs[0]..obs[{flat - 1}]")
    return obs.with_labels(**{name: resolve_target(obs, name)[0]})


def infer_target(env: Any, rollouts: ObsSet, seed: int) -> str:
    """The first numeric ``info`` entry the environment reports (in its own order) that the rollouts carry and that varies."""
    made, owned = make_env(env)
    try:
        _, info = made.reset(seed=seed)
    finally:
        if owned:
            made.close()
    for key in numeric_info(info):
        values = rollouts.labels.get(key)
        if values is not None and values.ndim == 1 and values.min() < values.max():
            return key
    labels = ", ".join(sorted(rollouts.labels))
    raise RliError(f"cannot infer a target: {env} reports no varying numeric info entry at every step; give one "
                   f"(target= / --target): a label of the visited observations ({labels}) or an observation entry "
                   f"obs[0]..obs[{int(np.prod(rollouts.obs.shape[1:])) - 1}]")
