"""Checkpoint cards: read ``<stem>.json``, check its ``"interrogate"`` block, load the observations it names.

A card sits beside a checkpoint (``ppo.zip`` → ``ppo.json``); its ``"interrogate"`` block
holds the protocol's settings (:data:`CARD_FIELDS`), its ``"env"`` the environment.
Observations are named by a spec: an :class:`~rli.ObsSet`, a ``.npz`` path, a
``"module:function"``, or a card's ``{"call": ..., "kwargs": ...}`` / ``{"path": ...}``.

Example:
    >>> from rli.protocol.cards import card_settings
    >>> card_settings({"env": "CartPole-v1", "interrogate": {"layer": 3}})
    {'layer': 3, 'env': 'CartPole-v1'}
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rli.errors import RliError
from rli.observations import ObsSet

CARD_KEY = "interrogate"
CARD_FIELDS = ("env", "target", "target_unit", "layer", "sensors", "probe_obs", "polarity_obs", "grid_axes")


def read_card(checkpoint: str | Path) -> dict[str, Any] | None:
    """The checkpoint card ``<stem>.json`` beside ``checkpoint``, or ``None`` when there is none.

    Example:
        >>> import json, pathlib, tempfile, rli
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "ppo.json").write_text(json.dumps({"env": "CartPole-v1", "interrogate": {"layer": 5}}))
        >>> rli.protocol.read_card(folder / "ppo.zip")["interrogate"], rli.protocol.read_card(folder / "a2c.zip")
        ({'layer': 5}, None)
    """
    path = Path(checkpoint).with_suffix(".json")
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RliError(f"the checkpoint card {path} is not valid JSON ({err}); fix or remove it") from None
    if not isinstance(card, dict):
        raise RliError(f"the checkpoint card {path} must hold a JSON object, not {type(card).__name__}")
    return card


def card_settings(card: Mapping[str, Any], *, where: str = "the card") -> dict[str, Any]:
    """The interrogation settings of a card: its ``"interrogate"`` block, checked, ``env`` defaulting to the card's.

    Keys (all optional): ``env`` (gymnasium id), ``target`` (a label name, or
    ``"obs[I]"`` for observation entry I), ``target_unit``, ``layer`` (index or name),
    ``sensors`` (observation indices to negate), ``probe_obs`` / ``polarity_obs``
    (``{"call": "module:function", "kwargs": {...}}`` returning an ObsSet, or
    ``{"path": "file.npz"}`` relative to the card), ``grid_axes`` (the heat map's
    horizontal and vertical axis: ``[{"index": 10, "label": ..., "unit": "m"}, ...]``).

    Example:
        >>> import rli
        >>> rli.protocol.card_settings({"env": "CartPole-v1", "interrogate": {"target": "obs[2]", "sensors": [2]}})
        {'target': 'obs[2]', 'sensors': [2], 'env': 'CartPole-v1'}
    """
    block = card.get(CARD_KEY, {})
    if not isinstance(block, Mapping):
        raise RliError(f"{where}: {CARD_KEY!r} must be an object of settings, not {type(block).__name__}")
    unknown = sorted(set(block) - set(CARD_FIELDS))
    if unknown:
        raise RliError(f"{where}: unknown {CARD_KEY!r} setting(s) {', '.join(unknown)}; known: {', '.join(CARD_FIELDS)}")
    out = dict(block)
    for key in ("env", "target", "target_unit"):
        if key in out and not isinstance(out[key], str):
            raise RliError(f"{where}: {CARD_KEY}.{key} must be a string, not {out[key]!r}")
    if "layer" in out and (isinstance(out["layer"], bool) or not isinstance(out["layer"], (int, str))):
        raise RliError(f"{where}: {CARD_KEY}.layer must be an actor-trunk index or a layer name, not {out['layer']!r}")
    if "sensors" in out:
        sensors = out["sensors"]
        if not isinstance(sensors, list) or not sensors or not all(isinstance(i, int) and not isinstance(i, bool)
                                                                     for i in sensors):
            raise RliError(f"{where}: {CARD_KEY}.sensors must be a non-empty list of observation indices, not {sensors!r}")
    for key in ("probe_obs", "polarity_obs"):
        if key in out:
            check_obs_spec(out[key], f"{where}: {CARD_KEY}.{key}")
    if "grid_axes" in out:
        axes = out["grid_axes"]
        if not isinstance(axes, list) or len(axes) != 2 or not all(
                isinstance(a, Mapping) and isinstance(a.get("index"), int) for a in axes):
            raise RliError(f"{where}: {CARD_KEY}.grid_axes must be two objects [horizontal, vertical], each "
                           f'{{"index": I, "label": ..., "unit": ...}}, not {axes!r}')
    if "env" not in out and isinstance(card.get("env"), str):
        out["env"] = card["env"]
    return out


def check_obs_spec(spec: Any, where: str) -> None:
    """Refuse an observation spec that is neither ``{"call": "module:function", "kwargs": {...}}`` nor ``{"path": ...}``.

    Example:
        >>> check_obs_spec({"path": "grid.npz"}, "probe_obs")
    """
    ok = isinstance(spec, Mapping) and (
        (set(spec) <= {"call", "kwargs"} and isinstance(spec.get("call"), str)
         and isinstance(spec.get("kwargs", {}), Mapping))
        or (set(spec) == {"path"} and isinstance(spec["path"], str)))
    if not ok:
        raise RliError(f'{where} must be {{"call": "module:function", "kwargs": {{...}}}} or {{"path": "file.npz"}}, '
                       f"not {spec!r}")


def load_obs(spec: Any, *, base: str | Path = ".", trust: bool = False) -> ObsSet:
    """Observations from a spec: an :class:`~rli.ObsSet`; a ``.npz`` path (:meth:`ObsSet.save`); ``"module:function"``;
    or a card's ``{"call": "module:function", "kwargs": {...}}`` / ``{"path": "file.npz"}``.

    Relative paths are taken from ``base``. A function outside the ``rli`` package is
    imported and called only with ``trust=True`` (importing runs the module's code).

    Example:
        >>> import rli
        >>> grid = rli.protocol.load_obs({"call": "rli.envs:probe_grid", "kwargs": {"n_x": 4, "n_y": 5}})
        >>> len(grid), grid.meta["grid_shape"]
        (20, [4, 5])
    """
    if isinstance(spec, ObsSet):
        return spec
    if isinstance(spec, (str, Path)):
        text = str(spec)
        spec = {"path": text} if text.endswith(".npz") or ":" not in text else {"call": text}
    check_obs_spec(spec, "an observation spec")
    if "path" in spec:
        path = Path(spec["path"])
        return ObsSet.load(path if path.is_absolute() else Path(base) / path)
    module_name, _, name = spec["call"].partition(":")
    if not module_name or not name:
        raise RliError(f"{spec['call']!r} is not 'module:function' (e.g. 'rli.envs:probe_grid')")
    if module_name != "rli" and not module_name.startswith("rli.") and not trust:
        raise RliError(f"observations from {spec['call']!r} would import and run code outside rli; "
                       "pass trust=True (--trust) if you trust it, or save the observations with ObsSet.save and give "
                       "the .npz")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise RliError(f"cannot find {spec['call']!r}: {err}") from None
    made = function(**dict(spec.get("kwargs", {})))
    if not isinstance(made, ObsSet):
        raise RliError(f"{spec['call']} returned {type(made).__name__}, not an rli.ObsSet")
    return made


def describe_obs(spec: Any, obs: ObsSet | None) -> str:
    """How observations were given: the call with its arguments, the path, or the ObsSet itself.

    Example:
        >>> describe_obs({"call": "rli.envs:probe_grid", "kwargs": {"nominal": "reference"}}, None)
        "rli.envs:probe_grid(nominal='reference')"
    """
    if isinstance(spec, Mapping) and "call" in spec:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in dict(spec.get("kwargs", {})).items())
        return f"{spec['call']}({kwargs})"
    if isinstance(spec, Mapping):
        return str(spec["path"])
    if isinstance(spec, (str, Path)):
        return str(spec)
    return repr(obs)
