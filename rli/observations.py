"""`ObsSet`: a batch of observations with named label columns."""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from rli import checks
from rli.errors import RliError
from rli.space_fit import dict_entries, flat_shape, flatten_batch
from rli.tensors import to_numpy

LabelFn = Callable[..., Mapping[str, Any]]


def _as_label(name: str, values: Any, n: int) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        raise RliError(f"label {name!r} is a ragged {type(values).__name__}; give one value (or a row of equal "
                       "length) per observation") from None
    if arr.ndim == 0 or arr.shape[0] != n:
        raise RliError(f"label {name!r} has {arr.shape[0] if arr.ndim else 'a scalar'} values for {n} observations; "
                       "give one value (or row) per observation")
    if arr.dtype == object or arr.dtype.kind == "c":
        raise RliError(f"label {name!r} has mixed, object or complex values (dtype {arr.dtype}); give real numbers "
                       "or strings")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).sum())
        raise RliError(f"label {name!r} contains {bad} NaN/inf values; drop those observations or fill the labels")
    return arr


class _OutOfRangeError(RliError, IndexError):
    """An observation index past the end (an IndexError too, so iterating an ObsSet stops there)."""


class ObsSet:
    """Observations (n × obs_shape) with labels: ``ObsSet(obs, labels={"upwash": y})``.

    Wherever rli takes observations it also takes a plain array; wherever it takes
    a target it takes a label name of an ObsSet or an array.

    Example:
        >>> import numpy as np, rli
        >>> obs = rli.ObsSet(np.zeros((4, 3)), labels={"speed": [1.0, 2.0, 3.0, 4.0]})
        >>> len(obs), float(obs.labels["speed"].mean())
        (4, 2.5)
        >>> obs[1:3].labels["speed"].tolist()
        [2.0, 3.0]

    ``Dict`` observations (a dict of arrays with a leading batch axis) need ``space=``, the
    policy (or its ``gymnasium.spaces.Dict``): they are held flat, in gymnasium's order
    (:func:`gymnasium.spaces.flatten`), as everywhere in rli, so ``"obs[i]"`` indexes the
    flat vector. With an array, ``space=`` checks that each row fits it. Channels-last
    images are held as given (see :attr:`rli.Policy.channels_last_shapes`).

        >>> from gymnasium import spaces
        >>> space = spaces.Dict({"goal": spaces.Box(-1, 1, (2,)), "pos": spaces.Box(-1, 1, (3,))})
        >>> rli.ObsSet({"goal": np.zeros((4, 2)), "pos": np.ones((4, 3))}, space=space).obs.shape
        (4, 5)

    ``states`` holds, for a recurrent policy, the hidden state it had before each
    observation ({name: array (n, ...)}, recorded by :meth:`from_rollouts`, with the
    recording policy's fingerprint in ``meta["recurrent_state_of"]``); indexing,
    :meth:`with_labels`, :meth:`save` and :meth:`load` keep them. See :mod:`rli.recurrent`.
    """

    def __init__(self, obs: Any, labels: Mapping[str, Any] | None = None, *,
                 meta: Mapping[str, Any] | None = None, states: Mapping[str, Any] | None = None,
                 space: Any = None) -> None:
        arr = checks.array(_with_space(obs, space), "observations", what="numeric array data (n, *obs_shape) of real numbers",
                           fix="drop or clean those rows")
        if arr.ndim < 2:
            raise RliError(f"observations must be a batch of shape (n, *obs_shape); got shape {arr.shape}. "
                           "For a single observation use obs[None]")
        if labels is not None and not isinstance(labels, Mapping):
            raise RliError(f"labels must be a mapping {{name: values}}, not {type(labels).__name__}")
        if meta is not None and not isinstance(meta, Mapping):
            raise RliError(f"meta must be a mapping, not {type(meta).__name__}")
        self._obs = arr
        self._labels = {str(name): _as_label(str(name), values, arr.shape[0]) for name, values in (labels or {}).items()}
        self.meta: dict[str, Any] = dict(meta or {})
        self._states = _as_states(states, arr.shape[0])

    # -------------------------------------------------------------------- access
    @property
    def obs(self) -> np.ndarray:
        """The observation array, shape (n, *obs_shape)."""
        return self._obs

    @property
    def labels(self) -> Mapping[str, np.ndarray]:
        """Read-only mapping of label name → array with one value (or row) per observation."""
        return MappingProxyType(self._labels)

    @property
    def states(self) -> Mapping[str, np.ndarray]:
        """Read-only mapping of hidden-state name → array (n, ...): a recurrent policy's state before each observation.

        Empty unless recorded (:meth:`from_rollouts` with a recurrent policy) or given.
        """
        return MappingProxyType(self._states)

    def label(self, name: str) -> np.ndarray:
        """One label column; :class:`RliError` lists the known names when ``name`` is not one."""
        if name not in self._labels:
            known = ", ".join(sorted(self._labels)) or "none (this ObsSet has no labels)"
            raise RliError(f"unknown label {name!r}; known labels: {known}")
        return self._labels[name]

    def __len__(self) -> int:
        return self._obs.shape[0]

    def __getitem__(self, index: Any) -> ObsSet:
        if isinstance(index, (bool, np.bool_)) or not (
                isinstance(index, (int, np.integer, slice)) or _index_array(index)):
            raise RliError(f"index an ObsSet with an int, a slice, or an array of ints or booleans, not {index!r}; "
                           "for a label use obs.labels[name]")
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise _OutOfRangeError(f"observation {index} is out of range for {len(self)} observations")
            index = slice(int(index), int(index) + 1 if int(index) != -1 else None)
        try:
            self._obs[index]
        except IndexError as err:
            raise _OutOfRangeError(f"cannot index {len(self)} observations with {index!r}: {err}") from None
        return ObsSet(self._obs[index], {k: v[index] for k, v in self._labels.items()}, meta=self.meta,
                      states={k: v[index] for k, v in self._states.items()})

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._obs if dtype is None else self._obs.astype(dtype)

    def __repr__(self) -> str:
        labels = ", ".join(self._labels) or "no labels"
        states = ", with recurrent states" if self._states else ""
        return f"ObsSet({len(self)} × {self._obs.shape[1:]}, {labels}{states})"

    def with_labels(self, **labels: Any) -> ObsSet:
        """A copy with extra (or replaced) label columns."""
        return ObsSet(self._obs, {**self._labels, **labels}, meta=self.meta, states=self._states)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the observations and labels (cache key)."""
        digest = hashlib.sha256()
        digest.update(f"{self._obs.dtype}:{self._obs.shape}".encode())
        digest.update(np.ascontiguousarray(self._obs).tobytes())
        for name in sorted(self._labels):
            digest.update(name.encode() + np.ascontiguousarray(self._labels[name]).tobytes())
        for name in sorted(self._states):
            digest.update(b"state:" + name.encode() + np.ascontiguousarray(self._states[name]).tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------- constructors
    @classmethod
    def grid(cls, base: Any, axes: Mapping[int, Any], *, label_fn: LabelFn | None = None) -> ObsSet:
        """Product grid over the chosen observation dimensions, the rest fixed at ``base``.

        ``axes`` maps an observation index to the values it takes. The grid is in
        ``"ij"`` order (the last axis varies fastest) and its shape is kept in
        ``meta["grid_shape"]`` for heat maps; each axis is also a label ``obs[i]``.
        ``label_fn(obs_batch) -> {name: values}`` adds computed labels.

        Example:
            >>> import numpy as np, rli
            >>> grid = rli.ObsSet.grid(np.zeros(28), {9: np.linspace(-6, 0, 80), 10: np.linspace(-3, 3, 120)})
            >>> len(grid), grid.meta["grid_shape"], grid.labels["obs[10]"][:2].round(2).tolist()
            (9600, [80, 120], [-3.0, -2.95])
        """
        base_arr = np.asarray(base, dtype=np.float64 if np.asarray(base).dtype.kind in "iub" else None)
        if base_arr.ndim != 1:
            raise RliError(f"base must be one flat observation, got shape {base_arr.shape}")
        if base_arr.dtype.kind != "f":
            raise RliError(f"base must be an observation of real numbers, got dtype {base_arr.dtype}")
        if not isinstance(axes, Mapping):
            raise RliError(f"axes must map observation indices to values ({{9: np.linspace(-6, 0, 80)}}), "
                           f"not {type(axes).__name__}")
        if not axes:
            raise RliError("axes is empty; give at least one {index: values}")
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in axes):
            raise RliError(f"axes keys must be observation indices (ints), got {list(axes)!r}")
        indices = [int(i) for i in axes]
        for i in indices:
            if not -base_arr.size <= i < base_arr.size:
                raise RliError(f"grid axis {i} is outside the observation (indices 0..{base_arr.size - 1})")
        try:
            values = [np.asarray(v, dtype=base_arr.dtype).ravel() for v in axes.values()]
        except (TypeError, ValueError) as err:
            raise RliError(f"grid axis values must be numbers ({err})") from None
        if any(v.size == 0 for v in values):
            raise RliError("every grid axis needs at least one value")
        size = float(np.prod([float(v.size) for v in values]))
        checks.fits_in_memory(8 * size * (base_arr.size + 2 * len(values)), f"a grid of {size:.0f} observations")
        try:
            mesh = np.meshgrid(*values, indexing="ij")
            obs = np.repeat(base_arr[None], mesh[0].size, axis=0)
        except (ValueError, MemoryError):
            raise RliError(f"a grid of {size:.0f} observations does not fit in memory; use fewer values per axis") from None
        labels: dict[str, Any] = {}
        for i, m in zip(indices, mesh):
            obs[:, i] = m.ravel()
            labels[f"obs[{i}]"] = m.ravel()
        if label_fn is not None:
            labels.update(label_fn(obs))
        return cls(obs, labels, meta={"grid_shape": [v.size for v in values], "grid_axes": indices})

    @classmethod
    def sample(cls, space: Any, n: int, seed: int, *, label_fn: LabelFn | None = None) -> ObsSet:
        """``n`` observations drawn from a gymnasium space (or a policy's observation space), seeded.

        Box spaces are sampled in one vectorised draw (uniform where bounded, normal
        where unbounded, shifted exponential where half-bounded, as gymnasium does);
        other spaces one sample at a time. A ``Dict`` space gives flat rows, each
        ``gymnasium.spaces.flatten(space, sample)`` (as rli holds Dict observations
        everywhere). The caller's space is not reseeded.

        Example:
            >>> import gymnasium as gym, rli
            >>> obs = rli.ObsSet.sample(gym.spaces.Box(-1, 1, (28,)), n=1000, seed=0)
            >>> obs.obs.shape, bool(obs.obs.max() <= 1)
            ((1000, 28), True)
        """
        from gymnasium import spaces

        if hasattr(space, "observation_space"):
            if space.observation_space is None:
                raise RliError("this policy has no observation space; pass a gymnasium space to sample() "
                               "or load the policy with env=... or observation_space=...")
            space = space.observation_space
        if not isinstance(space, spaces.Space):
            raise RliError(f"sample() needs a gymnasium space or a policy that has one, not {type(space).__name__}")
        n, seed = checks.count(n, "n"), checks.seed(seed)
        checks.fits_in_memory(3 * 8 * n * float(np.prod(flat_shape(space) or (1,))), f"sampling n={n} observations")
        if isinstance(space, spaces.Dict):
            entries = dict_entries(space)  # before drawing: a nested space is refused here
            local = copy.deepcopy(space)
            local.seed(seed)
            draws = [local.sample() for _ in range(n)]
            obs = flatten_batch(space, {e.key: np.stack([np.asarray(d[e.key]) for d in draws]) for e in entries})
        elif isinstance(space, spaces.Box):
            try:
                obs = _sample_box(space, n, np.random.default_rng(seed))
            except (ValueError, MemoryError):
                raise RliError(f"n={n} observations of shape {space.shape} do not fit in memory; sample fewer") from None
        else:
            copied = copy.deepcopy(space)
            copied.seed(seed)
            obs = np.stack([np.asarray(copied.sample()) for _ in range(n)])
        labels = dict(label_fn(obs)) if label_fn is not None else {}
        return cls(obs, labels, meta={"sampled_from": str(space), "seed": seed})

    @classmethod
    def from_rollouts(cls, env: Any, policy: Any, n: int, seed: int, *, episodes: int | None = None,
                      label_fn: LabelFn | None = None, max_episode_steps: int | None = None) -> ObsSet:
        """``n`` observations visited by ``policy`` acting deterministically in ``env``.

        Episode *i* is reset with seed ``seed + i``. Without ``episodes``, the first
        ``n`` consecutive steps are kept (a long-lived policy then gives few episodes).
        With ``episodes=E``, exactly ``E`` whole episodes are run and ``n`` observations
        are kept, spread evenly over all the steps visited (row ``k`` of the result is
        step ``⌊k·T/n⌋`` of the ``T`` steps of the episodes one after the other, so each
        episode contributes in proportion to its length): enough episodes for a split by
        episode (:func:`rli.probe` splits rollouts by their ``episode`` label). If the
        episodes visit ``T ≤ n`` steps, all are kept. ``meta`` records ``episodes``,
        ``visited_steps`` (T) and ``subsampled_every`` (T/n, or 1.0). Episodes then end
        only by termination, truncation or ``max_episode_steps``; in an environment that
        states no time limit (no spec limit, no ``TimeLimit`` wrapper) an episode still
        running after :data:`rli.rollout.UNLIMITED_EPISODE_STEPS` steps is an :class:`RliError` asking
        for ``max_episode_steps``.

        Labels come from ``label_fn(obs, info) -> {name: value}`` per step, or, by default,
        from every numeric entry of ``info`` present at every kept step (noise-free
        quantities environments expose there make good probe targets). The episode index
        and step are recorded as labels ``episode`` and ``step``. For a recurrent policy
        the hidden state it had before each step is recorded too (:attr:`states`, with
        its fingerprint in ``meta["recurrent_state_of"]``; a kept row keeps its own
        state), so that captures on these observations run from the states the policy
        actually had (:mod:`rli.recurrent`).

        Example:
            >>> import rli, torch.nn as nn
            >>> policy = rli.load_policy(nn.Sequential(nn.Linear(3, 1)), env="Pendulum-v1")
            >>> obs = rli.ObsSet.from_rollouts("Pendulum-v1", policy, n=50, seed=0)
            >>> len(obs), "episode" in obs.labels
            (50, True)
            >>> obs = rli.ObsSet.from_rollouts("Pendulum-v1", policy, n=50, seed=0, episodes=5, max_episode_steps=20)
            >>> len(obs), len(set(obs.labels["episode"])), obs.meta["subsampled_every"]
            (50, 5, 2.0)
        """
        from rli.rollout import collect_rollouts  # rollout collection lives with the rollouts

        return collect_rollouts(env, policy, n, seed, episodes=episodes, label_fn=label_fn,
                                max_episode_steps=max_episode_steps, into=cls)

    # --------------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write to a ``.npz`` (observations, labels, meta as JSON); returns the path written."""
        path = _path(path)
        if path.is_dir():
            raise RliError(f"{path} is a directory; give a file name such as {path / 'obs.npz'}")
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        try:
            arrays: dict[str, Any] = {"obs": self._obs, "meta": np.asarray(json.dumps(self.meta))}
        except (TypeError, ValueError) as err:
            raise RliError(f"meta must hold JSON data (numbers, strings, lists, dicts) to be saved ({err})") from None
        arrays.update({f"label:{name}": values for name, values in self._labels.items()})
        arrays.update({f"state:{name}": values for name, values in self._states.items()})
        try:
            np.savez_compressed(path, **arrays)
        except OSError as err:
            raise RliError(f"cannot write {path} ({err})") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> ObsSet:
        """Read an ``.npz`` written by :meth:`save` (never unpickles)."""
        path = _path(path)
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise RliError(f"{path} is a single .npy array, not an .npz written by ObsSet.save; "
                               "build one with rli.ObsSet(np.load(path)) instead")
            with data:
                if "obs" not in data.files:
                    raise RliError(f"{path} has no 'obs' array; it was not written by ObsSet.save "
                                   "(build one with rli.ObsSet(obs, labels) instead)")
                labels = {k[len("label:"):]: data[k] for k in data.files if k.startswith("label:")}
                states = {k[len("state:"):]: data[k] for k in data.files if k.startswith("state:")}
                meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
                if not isinstance(meta, dict):
                    raise RliError(f"{path}: its 'meta' entry is not a JSON object; it was not written by ObsSet.save")
                return cls(data["obs"], labels, meta=meta, states=states)
        except FileNotFoundError:
            raise RliError(f"no such file: {path}") from None
        except ValueError as err:
            if isinstance(err, RliError):
                raise
            raise RliError(f"{path} is not a readable ObsSet .npz ({err})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise RliError(f"{path} is not a readable ObsSet .npz ({err})") from None


def _with_space(obs: Any, space: Any) -> Any:
    """``obs`` for the constructor: a dict of arrays flattened with ``space`` (a policy or a Dict space), an array
    checked against it."""
    from gymnasium import spaces

    policy = space if hasattr(space, "prepare_obs") else None
    if space is not None and policy is None and not isinstance(space, spaces.Space):
        raise RliError(f"space must be a policy or a gymnasium space, not {type(space).__name__}")
    if isinstance(obs, Mapping):
        if space is None:
            raise RliError(f"observations are a dict ({', '.join(map(str, obs))}); an ObsSet holds them flat, in "
                           "gymnasium's order: pass space=policy (or its Dict observation space)")
        if policy is not None:
            return policy.prepare_obs(obs)
        if not isinstance(space, spaces.Dict):
            raise RliError(f"observations are a dict but space is {type(space).__name__}, not a Dict space; pass "
                           "the Dict observation space (or the policy) they come from")
        return flatten_batch(space, obs)
    if space is None or (not hasattr(obs, "shape") and not isinstance(obs, (list, tuple))):
        return obs
    try:
        shape = tuple(np.shape(to_numpy(obs)))[1:]
    except (TypeError, ValueError):
        return obs  # ragged: reported by the constructor
    if policy is not None:
        last = policy.channels_last_shapes.get("")
        accepted = [tuple(policy.obs_shape)] + ([last] if last is not None else [])
    else:
        accepted = [flat_shape(space)]
    if shape not in accepted:
        raise RliError(f"observations have shape {shape} per row but space takes "
                       f"{' or '.join(map(str, accepted))}; pass the observations of that space (or no space=)")
    return obs


def _as_states(states: Mapping[str, Any] | None, n: int) -> dict[str, np.ndarray]:
    if states is None:
        return {}
    if not isinstance(states, Mapping):
        raise RliError(f"states must be a mapping {{name: array (n, ...)}}, not {type(states).__name__}")
    out = {}
    for name, values in states.items():
        try:
            arr = np.asarray(values)
        except (TypeError, ValueError):
            raise RliError(f"hidden state {name!r} is ragged; give one array row per observation") from None
        if arr.dtype.kind != "f" or arr.ndim == 0 or arr.shape[0] != n:
            raise RliError(f"hidden state {name!r} must be a float array with one row per observation ({n}); "
                           f"got dtype {arr.dtype}, shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise RliError(f"hidden state {name!r} contains NaN/inf values; record the states again")
        out[str(name)] = arr
    return out


def _index_array(index: Any) -> bool:
    """Whether ``index`` is a list or array of ints or booleans (or empty)."""
    if not isinstance(index, (list, np.ndarray, range)):
        return False
    try:
        arr = np.asarray(index)
    except (TypeError, ValueError):
        return False
    return arr.dtype.kind in "biu" or arr.size == 0


def _path(path: Any) -> Path:
    if not isinstance(path, (str, Path)):
        raise RliError(f"path must be a file name (str or pathlib.Path), not {type(path).__name__}")
    return Path(path)


def _sample_box(space: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    low = np.broadcast_to(space.low, space.shape).astype(np.float64)
    high = np.broadcast_to(space.high, space.shape).astype(np.float64)
    below, above = np.isfinite(low), np.isfinite(high)
    out = rng.normal(size=(n, *space.shape))
    both = below & above
    lo, hi = np.where(below, low, 0.0), np.where(above, high, 0.0)
    out = np.where(both, lo + (hi - lo) * rng.random(size=out.shape), out)
    out = np.where(below & ~above, lo + rng.exponential(size=out.shape), out)
    out = np.where(above & ~below, hi - rng.exponential(size=out.shape), out)
    if np.issubdtype(space.dtype, np.integer):
        out = np.floor(out)
    return out.astype(space.dtype)


def numeric_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The numeric entries of an env's ``info`` (the default labels of ``from_rollouts``); shared with the protocol."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(key, str) and not key.startswith("_") and isinstance(value, (int, float, np.number)) \
                and not isinstance(value, bool):
            out[key] = value
        elif isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and value.ndim <= 1 and value.size <= 64:
            out[key] = value
    return out


def obs_length(obs: Any) -> int | None:
    """How many observations ``obs`` holds (an ObsSet, an array, a tensor, a list), or None if it cannot say.

    A scalar gives None (it is rejected with the other observation checks).

    Example:
        >>> import numpy as np
        >>> obs_length(np.zeros((3, 4))), obs_length([[0.0], [1.0]]), obs_length(np.float64(1.0)), obs_length("x")
        (3, 2, None, None)
    """
    if getattr(obs, "ndim", None) == 0:
        return None
    if isinstance(obs, ObsSet) or (hasattr(obs, "shape") and hasattr(obs, "__len__")):
        return len(obs)
    if isinstance(obs, Sequence) and not isinstance(obs, (str, bytes)):
        return len(obs)
    return None
