"""Observation and action spaces at rli's boundaries: Dict observations flattened, actions checked against an env.

rli works on flat observation arrays. A ``Dict`` observation (SB3 ``MultiInputPolicy``,
goal-conditioned robotics) is flattened in gymnasium's order, the order of
``gymnasium.spaces.flatten`` (keys in the space's order, ``Discrete`` entries one-hot),
wherever observations enter rli, so an :class:`~rli.ObsSet` holds flat float arrays and
``"obs[i]"`` indexes the flat vector; the policy unflattens before its network.

Example:
    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> space = spaces.Dict({"goal": spaces.Box(-1, 1, (2,)), "pos": spaces.Box(-1, 1, (3,))})
    >>> flatten_batch(space, {"goal": np.zeros((4, 2)), "pos": np.ones((4, 3))}).shape
    (4, 5)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rli.errors import RliError


@dataclass(frozen=True)
class DictEntry:
    """Where one key of a ``Dict`` observation sits in the flat vector, and how to rebuild it."""

    key: str
    space: Any
    start: int
    stop: int


def dict_entries(space: Any) -> tuple[DictEntry, ...]:
    """The keys of a ``Dict`` observation space in gymnasium's flattening order, with their flat slices.

    Example:
        >>> from gymnasium import spaces
        >>> [(e.key, e.start, e.stop) for e in dict_entries(spaces.Dict({"b": spaces.Box(0, 1, (2,)),
        ...                                                              "a": spaces.Discrete(3)}))]
        [('a', 0, 3), ('b', 3, 5)]
    """
    from gymnasium import spaces

    entries, start = [], 0
    for key, sub in space.spaces.items():
        if not isinstance(sub, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
            raise RliError(f"observation key {key!r} is a {type(sub).__name__} space; rli flattens Dict observations "
                           "made of Box, Discrete, MultiBinary and MultiDiscrete entries (flatten nested ones with "
                           "gymnasium.wrappers.FlattenObservation)")
        size = int(spaces.flatdim(sub))
        entries.append(DictEntry(key=str(key), space=sub, start=start, stop=start + size))
        start += size
    if not entries:
        raise RliError("the Dict observation space has no keys")
    return tuple(entries)


def flat_shape(space: Any) -> tuple[int, ...] | None:
    """Shape of one observation as rli holds it: ``(flatdim,)`` for a ``Dict`` space, else the space's shape."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return (dict_entries(space)[-1].stop,)
    return None if space is None or space.shape is None else tuple(space.shape)


def flat_dtype(space: Any) -> np.dtype:
    """The dtype of a flattened ``Dict`` observation (gymnasium's ``flatten_space`` dtype, at least float32)."""
    from gymnasium import spaces

    dtype = np.dtype(spaces.flatten_space(space).dtype)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float32)


def _one_hot(values: np.ndarray, n: int, start: int, key: str) -> np.ndarray:
    index = np.asarray(values).astype(np.int64) - start
    if index.size and (index.min() < 0 or index.max() >= n):
        raise RliError(f"observation key {key!r} holds {int(index.min() + start)}..{int(index.max() + start)}, "
                       f"outside its Discrete({n}, start={start}) space")
    out = np.zeros((index.shape[0], n), dtype=np.float32)
    out[np.arange(index.shape[0]), index] = 1.0
    return out


def flatten_batch(space: Any, obs: Mapping[str, Any]) -> np.ndarray:
    """A dict of observation arrays (one observation, or a batch with a leading axis) → an ``(n, flatdim)`` array.

    Rows equal ``gymnasium.spaces.flatten(space, row)``.

    Example:
        >>> import numpy as np
        >>> from gymnasium import spaces
        >>> space = spaces.Dict({"a": spaces.Discrete(3), "b": spaces.Box(0, 1, (2,))})
        >>> flatten_batch(space, {"a": 2, "b": [0.5, 0.25]}).tolist()
        [[0.0, 0.0, 1.0, 0.5, 0.25]]
    """
    from gymnasium import spaces

    entries = dict_entries(space)
    keys = [entry.key for entry in entries]
    if set(map(str, obs)) != set(keys):
        missing, extra = sorted(set(keys) - set(map(str, obs))), sorted(set(map(str, obs)) - set(keys))
        raise RliError(f"a Dict observation needs exactly the keys {keys}; missing {missing}, unexpected {extra}")
    arrays = {str(key): value for key, value in obs.items()}
    sub0 = entries[0].space
    first = np.asarray(arrays[entries[0].key])
    single_shape = () if isinstance(sub0, spaces.Discrete) else tuple(sub0.shape)
    batched = first.shape != single_shape
    parts, n = [], None
    for entry in entries:
        try:
            value = np.asarray(arrays[entry.key])
        except (TypeError, ValueError) as err:
            raise RliError(f"observation key {entry.key!r} is not a numeric array ({err})") from None
        if value.dtype == object or not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
            raise RliError(f"observation key {entry.key!r} must hold numbers, got dtype {value.dtype}")
        value = value if batched else value[None]
        shape = () if isinstance(entry.space, spaces.Discrete) else tuple(entry.space.shape)
        if tuple(value.shape[1:]) != shape or (n is not None and value.shape[0] != n):
            raise RliError(f"observation key {entry.key!r} has shape {np.asarray(arrays[entry.key]).shape}; its space "
                           f"takes {shape} per observation (or (n, {', '.join(map(str, shape))}) for a batch of n, "
                           "the same n for every key)")
        n = value.shape[0]
        if isinstance(entry.space, spaces.Discrete):
            parts.append(_one_hot(value, int(entry.space.n), int(entry.space.start), entry.key))
        elif isinstance(entry.space, spaces.MultiDiscrete):
            nvec = np.asarray(entry.space.nvec).ravel()
            starts = np.asarray(entry.space.start).ravel()
            flat = value.reshape(n, -1)
            parts.extend(_one_hot(flat[:, i], int(nvec[i]), int(starts[i]), f"{entry.key}[{i}]")
                         for i in range(nvec.size))
        else:
            parts.append(value.reshape(n, -1))
    dtype = flat_dtype(space)
    return np.concatenate([part.astype(dtype, copy=False) for part in parts], axis=1)


def unflatten_tensor(space: Any, flat: Any) -> dict[str, Any]:
    """The inverse of :func:`flatten_batch` on a torch tensor ``(n, flatdim)``: a dict of batched tensors.

    Each entry gets its space's dtype (as SB3's ``obs_as_tensor`` gives it), ``Discrete``
    entries their index back from the one-hot block.

    Example:
        >>> import torch
        >>> from gymnasium import spaces
        >>> space = spaces.Dict({"a": spaces.Discrete(3), "b": spaces.Box(0, 1, (2,))})
        >>> out = unflatten_tensor(space, torch.tensor([[0.0, 0.0, 1.0, 0.5, 0.25]]))
        >>> out["a"].tolist(), out["b"].tolist()
        ([2], [[0.5, 0.25]])
    """
    import torch
    from gymnasium import spaces

    n = flat.shape[0]
    out = {}
    for entry in dict_entries(space):
        block = flat[:, entry.start:entry.stop]
        sub = entry.space
        if isinstance(sub, spaces.Discrete):
            out[entry.key] = block.argmax(dim=1).to(torch.int64) + int(sub.start)
        elif isinstance(sub, spaces.MultiDiscrete):
            nvec = np.asarray(sub.nvec).ravel()
            starts = np.asarray(sub.start).ravel()
            edges = np.concatenate([[0], np.cumsum(nvec)])
            columns = [block[:, edges[i]:edges[i + 1]].argmax(dim=1) + int(starts[i]) for i in range(nvec.size)]
            out[entry.key] = torch.stack(columns, dim=1).to(torch.int64).reshape(n, *sub.shape)
        else:
            dtype = torch.from_numpy(np.zeros(0, dtype=sub.dtype)).dtype
            out[entry.key] = block.reshape(n, *sub.shape).to(dtype)
    return out


def channels_last(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The channels-last form ``(H, W, C)`` of a channels-first image shape ``(C, H, W)``.

    Example:
        >>> channels_last((3, 36, 24))
        (36, 24, 3)
    """
    channels, height, width = (int(size) for size in shape)
    return (height, width, channels)


def to_channels_first(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` (one image or a batch) in the channels-first layout ``shape``, as SB3's ``maybe_transpose`` does it.

    An array that already has ``shape`` per observation (or is one observation of it) is
    returned as it is, so an ambiguous square image (``C == H == W``) is taken as
    channels-first, as SB3 takes it; otherwise one channels-last image ``(H, W, C)`` or a
    batch ``(n, H, W, C)`` becomes a transposed view; anything else is returned unchanged
    for the shape check that follows to report.

    Example:
        >>> import numpy as np
        >>> to_channels_first(np.zeros((5, 36, 24, 3)), (3, 36, 24)).shape
        (5, 3, 36, 24)
        >>> to_channels_first(np.zeros((3, 3, 3)), (3, 3, 3)).strides == np.zeros((3, 3, 3)).strides
        True
    """
    shape = tuple(shape)
    if tuple(value.shape) == shape or tuple(value.shape[1:]) == shape:
        return value
    last = channels_last(shape)
    if value.ndim == 3 and tuple(value.shape) == last:
        return np.transpose(value, (2, 0, 1))
    if value.ndim == 4 and tuple(value.shape[1:]) == last:
        return np.transpose(value, (0, 3, 1, 2))
    return value


def _describe_space(space: Any) -> str:
    return str(space).replace("\n", " ")


def _spaces_agree(policy_space: Any, env_space: Any) -> bool:
    from gymnasium import spaces

    if type(policy_space) is not type(env_space):
        return False
    if isinstance(env_space, spaces.Discrete):
        return int(policy_space.n) == int(env_space.n) and int(policy_space.start) == int(env_space.start)
    if isinstance(env_space, spaces.MultiDiscrete):
        return np.array_equal(policy_space.nvec, env_space.nvec)
    return tuple(policy_space.shape or ()) == tuple(env_space.shape or ())


def _check_observation_fit(policy: Any, observation_space: Any, where: str) -> None:
    """The observation half of :func:`check_env_fit`: shapes, channels-last images and Dict keys."""
    from gymnasium import spaces

    if observation_space is None:
        return
    last = policy.channels_last_shapes
    expected_obs = flat_shape(observation_space)
    accepted = [tuple(policy.obs_shape)] + ([last[""]] if "" in last else [])
    if expected_obs is not None and tuple(expected_obs) not in accepted:
        dict_note = " (its Dict observation flattened)" if isinstance(observation_space, spaces.Dict) else ""
        also = f" (or channels-last {last['']})" if "" in last else ""
        raise RliError(f"{where} observations have shape {tuple(expected_obs)}{dict_note} but the policy takes "
                       f"{tuple(policy.obs_shape)}{also}; is this the environment the policy was trained on?")
    own_obs = policy.observation_space
    if not (isinstance(own_obs, spaces.Dict) and isinstance(observation_space, spaces.Dict)):
        return
    if [e.key for e in dict_entries(own_obs)] != [e.key for e in dict_entries(observation_space)]:
        raise RliError(f"{where} observations have the keys {list(observation_space.spaces)} but the policy was "
                       f"trained on {list(own_obs.spaces)}; is this the environment the policy was trained on?")
    for key, sub in observation_space.spaces.items():
        own = own_obs.spaces[key]
        shapes = [tuple(own.shape or ())] + ([last[str(key)]] if str(key) in last else [])
        if tuple(sub.shape or ()) not in shapes or spaces.flatdim(sub) != spaces.flatdim(own):
            also = f" (or channels-last {last[str(key)]})" if str(key) in last else ""
            raise RliError(f"{where} observation key {key!r} is {_describe_space(sub)} but the policy takes "
                           f"{_describe_space(own)}{also}; is this the environment the policy was trained on?")


def check_env_fit(policy: Any, observation_space: Any, action_space: Any, where: str) -> None:
    """Raise :class:`~rli.RliError` unless ``policy`` takes ``where``'s observations and its actions fit ``action_space``.

    Checked before any rollout: the observation shape (channels-last images ``(H, W, C)``
    too where the policy takes them, as SB3's ``predict`` does: see
    :attr:`rli.Policy.channels_last_shapes`; a ``Dict`` space by its keys and each key's
    shape), the action space the policy was loaded with against the env's,
    and the actions the policy computes (on two zero observations) against the env's
    action space: shape, and for discrete spaces integer values in range. Box actions
    outside the bounds are clipped by :meth:`~rli.Policy.act` (as SB3's ``predict``
    does for policies that do not squash), so bounds are not a mismatch.

    Example:
        >>> import gymnasium as gym, torch.nn as nn, rli
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 3)))
        >>> env = gym.make("Pendulum-v1")
        >>> check_env_fit(policy, env.observation_space, env.action_space, "Pendulum-v1")
        Traceback (most recent call last):
        ...
        rli.errors.RliError: the policy computes actions of shape (3,) per observation but Pendulum-v1 takes (1,) ...
    """
    from gymnasium import spaces

    _check_observation_fit(policy, observation_space, where)
    if action_space is None:
        return
    own = policy.action_space
    if own is not None and not _spaces_agree(own, action_space):
        raise RliError(f"the policy's action space is {_describe_space(own)} but {where} takes "
                       f"{_describe_space(action_space)}; use the environment the policy was trained on")
    probe = np.zeros((2, *policy.obs_shape), dtype=np.float32)
    try:
        actions = np.asarray(policy.act(probe))
    except RliError as err:
        raise RliError(f"{where}: {err}") from None
    per_step = tuple(action_space.shape or ())
    loaded = "" if own is not None else (" (the policy was loaded without an action space, so its raw outputs are its "
                                         f"actions: load it with env= or action_space={_describe_space(action_space)} "
                                         "so rli turns them into actions, e.g. argmax over logits)")
    if actions.shape != (2, *per_step):
        raise RliError(f"the policy computes actions of shape {actions.shape[1:]} per observation but {where} takes "
                       f"{per_step} ({_describe_space(action_space)}){loaded}; fix the policy's output layer or use "
                       "the environment it was trained on")
    if isinstance(action_space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        if not np.issubdtype(actions.dtype, np.integer):
            raise RliError(f"the policy computes {actions.dtype} actions but {where} takes integers "
                           f"({_describe_space(action_space)}){loaded}")
        bad = [a for a in actions if not action_space.contains(np.asarray(a, dtype=action_space.dtype))]
        if bad:
            raise RliError(f"the policy computes the action {np.asarray(bad[0]).tolist()}, outside {where}'s action "
                           f"space {_describe_space(action_space)}{loaded}")
    elif isinstance(action_space, spaces.Box) and not np.issubdtype(actions.dtype, np.number):
        raise RliError(f"the policy computes {actions.dtype} actions but {where} takes numbers "
                       f"({_describe_space(action_space)})")
