"""What users pass as a target (or a concept to erase) → its values and its name: the one resolver in rli.

:func:`rli.probe`, :func:`rli.probe_layers`, :func:`rli.polarity_test`, :func:`rli.erase`,
:func:`rli.interrogate`, the CLI and the pytest plugin all resolve targets here, so the
same forms work everywhere:

- a label name of an :class:`~rli.ObsSet` (``"upwash"``);
- ``"obs[I]"``: entry I of each (flattened) observation, from an ObsSet or a plain array;
- an array (or tensor) with one value, or one row of outputs, per observation: named ``"target"``;
- ``(name, array)``: the same array, under that name (in results, summaries, baselines and reports).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rli.errors import RliError
from rli.observations import ObsSet
from rli.tensors import to_numpy

DEFAULT_NAME = "target"
OBS_ENTRY = re.compile(r"obs\[(\d+)\]")


def obs_entry(name: str) -> int | None:
    """The index I of a name ``"obs[I]"``, else ``None``.

    Example:
        >>> from rli.targets import obs_entry
        >>> obs_entry("obs[12]"), obs_entry("upwash")
        (12, None)
    """
    match = OBS_ENTRY.fullmatch(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def is_named_array(target: Any) -> bool:
    """Whether ``target`` is the ``(name, array)`` form."""
    return (isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], str)
            and not isinstance(target[1], str))


def target_name(target: Any) -> str | None:
    """The name a target will carry, without resolving it: the label or ``"obs[I]"`` text, the name of a
    ``(name, array)`` pair, ``"target"`` for an unnamed array, ``None`` for ``None``.

    Example:
        >>> import numpy as np
        >>> from rli.targets import target_name
        >>> target_name("upwash"), target_name(("lift", np.zeros(3))), target_name(np.zeros(3))
        ('upwash', 'lift', 'target')
    """
    if target is None:
        return None
    if isinstance(target, str):
        return target
    if is_named_array(target):
        return target[0]
    return DEFAULT_NAME


def check_target_name(target: Any, obs_size: int | None, *, what: str = "target") -> None:
    """Cheap checks of a target before any work: a ``(name, array)`` name is non-empty, an ``"obs[I]"`` index
    fits an observation of ``obs_size`` entries. Label names are checked by :func:`resolve_target`.

    Example:
        >>> from rli.targets import check_target_name
        >>> check_target_name("obs[9]", 4)
        Traceback (most recent call last):
        ...
        rli.errors.RliError: target 'obs[9]' names observation entry 9, but observations have 4 entries (obs[0]..obs[3])
    """
    if is_named_array(target) and not target[0].strip():
        raise RliError(f"{what}: the name of a (name, array) target must not be empty; e.g. ('upwash', values)")
    index = obs_entry(target) if isinstance(target, str) else None
    if index is not None and obs_size is not None and index >= obs_size:
        raise RliError(f"{what} {target!r} names observation entry {index}, but observations have {obs_size} "
                       f"entries (obs[0]..obs[{obs_size - 1}])")


def _flat_obs(obs: Any, target: str) -> np.ndarray:
    if isinstance(obs, ObsSet):
        arr = obs.obs
    elif hasattr(obs, "detach"):
        arr = to_numpy(obs)
    elif isinstance(obs, (np.ndarray, Sequence)) and not isinstance(obs, (str, bytes)):
        try:
            arr = np.asarray(obs)
        except (TypeError, ValueError):
            arr = np.asarray(None)
    else:
        raise RliError(f"target {target!r} is an observation entry, which needs the observations as an array or an "
                       f"rli.ObsSet, not {type(obs).__name__}; pass the entry's values as an array instead")
    if arr.ndim < 2 or arr.dtype == object:
        raise RliError(f"target {target!r}: the observations must be one batch (n, *obs_shape) to take an entry "
                       f"from, got {'shape ' + str(arr.shape) if arr.dtype != object else 'ragged data'}")
    return arr.reshape(arr.shape[0], -1)


def resolve_target(obs: Any, target: Any, *, what: str = "target") -> tuple[np.ndarray, str]:
    """``(values, name)`` of ``target`` on ``obs``: the one place rli turns a target into numbers.

    ``target`` is a label name of the ObsSet ``obs``, ``"obs[I]"`` (entry I of each
    flattened observation; a label of that name wins, as grids carry them), an array or
    tensor (named ``"target"``), or ``(name, array)``. The values come back as given
    (``obs[I]`` as float64); callers check their dtype and shape. ``what`` names the
    argument in errors (``"concept"`` for :func:`rli.erase`).

    Example:
        >>> import numpy as np, rli
        >>> from rli.targets import resolve_target
        >>> obs = rli.ObsSet(np.arange(6.0).reshape(3, 2), labels={"speed": [1, 2, 3]})
        >>> resolve_target(obs, "obs[1]")[0].tolist(), resolve_target(obs, ("lift", [0, 1, 0]))[1]
        ([1.0, 3.0, 5.0], 'lift')
    """
    if target is None:
        raise RliError(f"{what} is missing: give a label name, 'obs[I]', an array, or (name, array)")
    if isinstance(target, str):
        if isinstance(obs, ObsSet) and target in obs.labels:
            return obs.labels[target], target
        index = obs_entry(target)
        if index is not None:
            flat = _flat_obs(obs, target)
            check_target_name(target, flat.shape[1], what=what)
            return flat[:, index].astype(np.float64), target
        if not isinstance(obs, ObsSet):
            raise RliError(f"{what} {target!r} is a label name, but the observations are a plain array "
                           f"({type(obs).__name__}), not an ObsSet; pass rli.ObsSet(obs, labels={{...}}), the values "
                           "as an array (or (name, array)), or 'obs[I]' for an observation entry")
        known = ", ".join(sorted(obs.labels)) or "none (this ObsSet has no labels)"
        size = int(np.prod(obs.obs.shape[1:]))
        raise RliError(f"unknown label {target!r}; known labels: {known}; or name an observation entry "
                       f"obs[0]..obs[{size - 1}], or pass (name, array)")
    name = DEFAULT_NAME
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], str):
        if isinstance(target[1], str):
            raise RliError(f"{what} ({target[0]!r}, {target[1]!r}): the second item of (name, array) must be the "
                           "values, not a string")
        check_target_name(target, None, what=what)
        name, target = target
    target = to_numpy(target)
    try:
        values = np.asarray(target)
    except (TypeError, ValueError):
        called = what if name == DEFAULT_NAME else f"{what} {name!r}"
        raise RliError(f"{called} must be an array with one value (or one row of outputs) per observation, "
                       f"not a ragged {type(target).__name__}") from None
    return values, name
