"""Declarative analysis specs: frozen, hashable, JSON-serialisable descriptions of what rli measures.

A spec names the observations (:class:`Obs`: an ``ObsSet`` file, a grid builder called by
name, or rollouts of the policy with a seed and a number of episodes), the target and the
settings, and nothing that lives only in memory, so that it can travel to another process
or machine, key a result store and be written in a card. :meth:`Spec.run` calls the public
rli function (:func:`rli.probe`, :func:`rli.probe_layers`, :func:`rli.polarity_test`,
:func:`rli.compare` of :func:`rli.ablate`, :func:`rli.cka`) and returns rows of the sweep
table without the checkpoint columns.

Example:
    >>> from rli.runs.specs import Obs, Probe, spec_from_dict
    >>> spec = Probe(obs=Obs.grid("rli.envs:probe_grid", n_x=4, n_y=5), target="true_upwash", layer=5)
    >>> spec_from_dict(spec.to_dict()) == spec, len(spec.key())
    (True, 64)
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from rli import defaults
from rli.errors import RliError

Row = dict[str, Any]


def rli_version() -> str:
    """The rli version that results are keyed by (a new version recomputes, never reuses, stored results)."""
    import rli

    return str(rli.__version__)


def _freeze(value: Any, where: str) -> Any:
    """JSON scalars and (nested) lists as hashable values: lists become tuples."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RliError(f"{where} must be finite, not {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, where) for v in value)
    raise RliError(f"{where} must be a number, string, bool, None or a list of them (so that the spec is "
                   f"JSON-serialisable), not {type(value).__name__}")


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Obs:
    """Where a spec's observations come from: exactly one of a file, a builder call, or rollouts.

    * ``Obs.file("probe.npz")``: an :meth:`rli.ObsSet.save` file (its content is part of the store key);
    * ``Obs.grid("rli.envs:probe_grid", nominal="reference")``: a function called by name with
      JSON keyword arguments (outside the ``rli`` package only with ``trust=True``, as
      :func:`rli.protocol.load_obs`);
    * ``Obs.rollouts("CartPole-v1", n=500, seed=0, episodes=10)``: states each checkpoint itself
      visits (:meth:`rli.ObsSet.from_rollouts`), so they differ from checkpoint to checkpoint.
    """

    path: str | None = None
    call: str | None = None
    kwargs: tuple[tuple[str, Any], ...] = ()
    env: str | None = None
    n: int | None = None
    seed: int = 0
    episodes: int | None = None

    def __post_init__(self) -> None:
        given = [self.path is not None, self.call is not None, self.env is not None]
        if sum(given) != 1:
            raise RliError("Obs needs exactly one source: Obs.file(path), Obs.grid('module:function', ...) or "
                           "Obs.rollouts(env, n, seed, episodes)")
        if self.env is not None and (self.n is None or isinstance(self.n, bool) or not isinstance(self.n, int)
                                     or self.n < 1):
            raise RliError(f"Obs.rollouts needs n, a positive number of observations, not {self.n!r}")
        if self.call is not None and ":" not in self.call:
            raise RliError(f"Obs.grid needs 'module:function' (e.g. 'rli.envs:probe_grid'), not {self.call!r}")

    @classmethod
    def file(cls, path: str | Path) -> Obs:
        """Observations saved with :meth:`rli.ObsSet.save`."""
        return cls(path=str(path))

    @classmethod
    def grid(cls, call: str, **kwargs: Any) -> Obs:
        """Observations built by ``module:function(**kwargs)`` (e.g. ``rli.envs:probe_grid``)."""
        frozen = tuple(sorted((str(k), _freeze(v, f"Obs.grid keyword {k}")) for k, v in kwargs.items()))
        return cls(call=call, kwargs=frozen)

    @classmethod
    def rollouts(cls, env: str, n: int, seed: int = 0, episodes: int | None = None) -> Obs:
        """``n`` states the checkpoint visits in ``env`` over ``episodes`` whole episodes from ``seed``."""
        if not isinstance(env, str):
            raise RliError(f"Obs.rollouts needs a gymnasium id (a string) so that the spec is serialisable, "
                           f"not {type(env).__name__}")
        return cls(env=env, n=n, seed=seed, episodes=episodes)

    @property
    def per_policy(self) -> bool:
        """Whether the observations depend on the policy (rollouts)."""
        return self.env is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able)."""
        if self.path is not None:
            return {"path": self.path}
        if self.call is not None:
            return {"call": self.call, "kwargs": {k: _thaw(v) for k, v in self.kwargs}}
        return {"env": self.env, "n": self.n, "seed": self.seed, "episodes": self.episodes}

    @classmethod
    def from_dict(cls, data: Any) -> Obs:
        """The inverse of :meth:`to_dict`; also takes a path string (``.npz``) or ``"module:function"``."""
        if isinstance(data, Obs):
            return data
        if isinstance(data, str):
            return cls.file(data) if data.endswith(".npz") or ":" not in data else cls.grid(data)
        if not isinstance(data, Mapping):
            raise RliError(f"observations must be {{'path': ...}}, {{'call': ..., 'kwargs': {{...}}}} or "
                           f"{{'env': ..., 'n': ..., 'seed': ..., 'episodes': ...}}, not {data!r}")
        if "path" in data:
            return cls.file(data["path"])
        if "call" in data:
            kwargs = data.get("kwargs", {})
            if not isinstance(kwargs, Mapping):
                raise RliError(f"observation kwargs must be an object, not {kwargs!r}")
            return cls.grid(data["call"], **kwargs)
        if "env" in data:
            return cls(env=data["env"], n=data.get("n"), seed=data.get("seed", 0), episodes=data.get("episodes"))
        raise RliError(f"observations need 'path', 'call' or 'env', got keys {sorted(data)}")

    def digest(self) -> str:
        """SHA-256 of the file's content for ``Obs.file`` (so an edited file is not served stale results), else ''."""
        if self.path is None:
            return ""
        path = Path(self.path)
        if not path.is_file():
            raise RliError(f"no such observation file: {self.path} (Obs.file needs a file saved by ObsSet.save)")
        return _sha256_file(path)

    def load(self, policy: Any, *, trust: bool = False) -> Any:
        """The :class:`rli.ObsSet` (rollouts run ``policy``)."""
        from rli.observations import ObsSet
        from rli.protocol import load_obs

        if self.env is not None:
            assert self.n is not None  # checked in __post_init__
            return ObsSet.from_rollouts(self.env, policy, n=self.n, seed=self.seed, episodes=self.episodes)
        return load_obs(self.to_dict(), trust=trust)

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        if self.call is not None:
            return f"{self.call}({', '.join(f'{k}={_thaw(v)!r}' for k, v in self.kwargs)})"
        return f"rollouts of {self.env} (n={self.n}, seed={self.seed}, episodes={self.episodes})"


class ObsCache:
    """Observations loaded once per worker (files, grids) or once per checkpoint (rollouts)."""

    def __init__(self) -> None:
        self._shared: dict[Obs, Any] = {}
        self._per_policy: dict[tuple[str, Obs], Any] = {}

    def get(self, obs: Obs, policy: Any, *, trust: bool) -> Any:
        """The observations of ``obs`` for ``policy``."""
        if obs.per_policy:
            key = (policy.fingerprint, obs)
            if key not in self._per_policy:
                self._per_policy.clear()  # one checkpoint at a time: rollouts of earlier ones are not needed again
                self._per_policy[key] = obs.load(policy, trust=trust)
            return self._per_policy[key]
        if obs not in self._shared:
            if len(self._shared) >= 8:
                self._shared.clear()
            self._shared[obs] = obs.load(policy, trust=trust)
        return self._shared[obs]


def _layer_label(name: str, index: int | None) -> str:
    return f"actor.{index}" if index is not None else name


def _ci(ci: Any) -> tuple[float | None, float | None]:
    if ci is None:
        return None, None
    low, high = float(ci[0]), float(ci[1])
    return (None if math.isnan(low) else low), (None if math.isnan(high) else high)


class Spec(ABC):
    """Base of the analysis specs: ``name``, :meth:`to_dict`, :meth:`key`, :meth:`run`."""

    name: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-able), with the analysis name under ``"analysis"``."""
        out: dict[str, Any] = {"analysis": self.name}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Obs) else _thaw(value)
        return out

    def key(self) -> str:
        """A stable hash of the spec: SHA-256 of its canonical JSON and the rli version."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(f"{text}\nrli {rli_version()}".encode()).hexdigest()

    def policy_inputs(self, policy: Any) -> str:
        """What the analysis reads about this checkpoint besides its weights (part of the store key; none here)."""
        return ""

    def inputs_digest(self) -> str:
        """Hash of the files the spec reads besides the checkpoint (part of the store key)."""
        parts = [getattr(self, f.name).digest() for f in fields(self)  # type: ignore[arg-type]
                 if isinstance(getattr(self, f.name), Obs)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @abstractmethod
    def run(self, policy: Any, *, trust: bool = False, cache: ObsCache | None = None) -> list[Row]:
        """Measure ``policy``: rows with the keys analysis, layer, target, metric, value, ci_low, ci_high, spec_key."""

    def _obs(self, obs: Obs, policy: Any, trust: bool, cache: ObsCache | None) -> Any:
        return (cache or ObsCache()).get(obs, policy, trust=trust)

    def _row(self, metric: str, value: Any, ci: Any = None, *, layer: str | None = None,
             target: str | None = None) -> Row:
        low, high = _ci(ci)
        return {"analysis": self.name, "layer": layer, "target": target, "metric": metric,
                "value": float(value) if value is not None else math.nan, "ci_low": low, "ci_high": high,
                "spec_key": self.key()}


def _check_layer(layer: Any, what: str = "layer") -> Any:
    if isinstance(layer, bool) or not isinstance(layer, (int, str)):
        raise RliError(f"{what} must be an actor-trunk index or a layer name (serialisable), not {layer!r}")
    return layer


def _obs_field(value: Any) -> Obs:
    return Obs.from_dict(value)


def _probe_rows(spec: Spec, result: Any) -> list[Row]:
    layer = _layer_label(result.layer, result.layer_index)
    rows = [spec._row(result.metric, result.score, result.ci, layer=layer, target=result.target)]
    if result.selectivity is not None:
        rows.append(spec._row("selectivity", result.selectivity, layer=layer, target=result.target))
    return rows


@dataclass(frozen=True)
class Probe(Spec):
    """:func:`rli.probe` of ``target`` at ``layer`` → rows ``r2`` (with its CI) and ``selectivity`` (with controls)."""

    name: ClassVar[str] = "probe"
    obs: Obs
    target: str
    layer: int | str
    kind: str = "ridge"
    controls: bool = True
    folds: int = defaults.FOLDS
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs", _obs_field(self.obs))
        _check_layer(self.layer)
        if not isinstance(self.target, str):
            raise RliError(f"target must be a label name or 'obs[I]' (serialisable), not {type(self.target).__name__}")

    def run(self, policy: Any, *, trust: bool = False, cache: ObsCache | None = None) -> list[Row]:
        import rli.probes

        obs = self._obs(self.obs, policy, trust, cache)
        result = rli.probes.probe(policy, obs, self.target, self.layer, kind=self.kind, controls=self.controls,
                                  folds=self.folds, seed=self.seed)
        return _probe_rows(self, result)


@dataclass(frozen=True)
class Profile(Spec):
    """:func:`rli.probe_layers`: ``r2`` (with CI) and ``selectivity`` rows for every layer (or ``layers``)."""

    name: ClassVar[str] = "profile"
    obs: Obs
    target: str
    layers: tuple[int | str, ...] | None = None
    kind: str = "ridge"
    controls: bool = True
    folds: int = defaults.FOLDS
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs", _obs_field(self.obs))
        if self.layers is not None:
            if isinstance(self.layers, (str, int)) or not isinstance(self.layers, Sequence):
                raise RliError(f"layers must be a list of layers, not {self.layers!r}")
            object.__setattr__(self, "layers", tuple(_check_layer(x, "each of layers") for x in self.layers))
        if not isinstance(self.target, str):
            raise RliError(f"target must be a label name or 'obs[I]' (serialisable), not {type(self.target).__name__}")

    def run(self, policy: Any, *, trust: bool = False, cache: ObsCache | None = None) -> list[Row]:
        import rli.probes

        obs = self._obs(self.obs, policy, trust, cache)
        profile = rli.probes.probe_layers(policy, obs, self.target, list(self.layers) if self.layers else None,
                                          kind=self.kind, controls=self.controls, folds=self.folds, seed=self.seed)
        return [row for result in profile.results for row in _probe_rows(self, result)]


@dataclass(frozen=True)
class Polarity(Spec):
    """:func:`rli.polarity_test`: rows ``r2_normal``, ``r2_inverted`` and ``drop`` (with CIs)."""

    name: ClassVar[str] = "polarity"
    obs: Obs
    target: str
    sensors: tuple[int, ...]
    layer: int | str
    folds: int = defaults.FOLDS
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs", _obs_field(self.obs))
        sensors = (self.sensors,) if isinstance(self.sensors, int) else self.sensors
        if not isinstance(sensors, Sequence) or not sensors or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in sensors):
            raise RliError(f"sensors must be observation indices, not {self.sensors!r}")
        object.__setattr__(self, "sensors", tuple(sensors))
        _check_layer(self.layer)

    def run(self, policy: Any, *, trust: bool = False, cache: ObsCache | None = None) -> list[Row]:
        import rli.polarity

        obs = self._obs(self.obs, policy, trust, cache)
        result = rli.polarity.polarity_test(policy, obs, self.target, list(self.sensors), self.layer,
                                            folds=self.folds, seed=self.seed)
        layer = _layer_label(result.layer, result.layer_index)
        return [self._row("r2_normal", result.r2_normal, result.r2_normal_ci, layer=layer, target=result.target),
                self._row("r2_inverted", result.r2_inverted, layer=layer, target=result.target),
                self._row("drop", result.drop, result.drop_ci, layer=layer, target=result.target)]


@dataclass(frozen=True)
class Ablation(Spec):
    """:func:`rli.compare` of :func:`rli.ablate` (``direction`` ``"pcK"`` / ``"pcI-J"`` fitted on ``obs``).

    Rows ``drop`` (mean drop in return, paired t CI) and ``relative_drop`` (its CI over
    ``|mean baseline return|``), on episodes ``seed..seed+episodes-1`` of ``env``, each cut at
    ``max_steps`` when given.
    """

    name: ClassVar[str] = "ablation"
    env: str
    layer: int | str
    obs: Obs
    direction: str = "pc1"
    alpha: float = 0.0
    episodes: int = defaults.EPISODES
    seed: int = 0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs", _obs_field(self.obs))
        _check_layer(self.layer)
        if not isinstance(self.env, str):
            raise RliError(f"env must be a gymnasium id (serialisable), not {type(self.env).__name__}")
        if not isinstance(self.direction, str) or not self.direction.startswith("pc"):
            raise RliError(f"direction must be 'pcK' or 'pcI-J' (principal directions on obs), not {self.direction!r}")

    def run(self, policy: Any, *, trust: bool = False, cache: ObsCache | None = None) -> list[Row]:
        import rli.comparison
        import rli.interventions

        obs = self._obs(self.obs, policy, trust, cache)
        cut = rli.interventions.ablate(policy, self.layer, self.direction, alpha=self.alpha, obs=obs)
        result = rli.comparison.compare(policy, self.env, cut, episodes=self.episodes, seed=self.seed, progress=False,
                                        max_steps=self.max_steps)
        layer = _layer_label(cut.layer.name, cut.layer.index)
        rows = [self._row("drop", result.drop, result.ci, layer=layer)]
        if result.relative_drop is not None:
            rows.append(self._row("relative_drop", result.relative_drop, result.relative_ci, layer=layer))
        return rows


@dataclass(frozen=True)
class CKA(Spec):
    """:func:`rli.cka` of ``layer`` against ``other_layer`` of the same checkpoint, or ``layer`` of ``reference``.

    ``reference`` is another checkpoint file (e.g. the end of training: how close each
    step's representation is to it); its content is part of the store key. Rows ``cka``
    (bootstrap CI over episodes when the observations have an ``episode`` label) and
    ``p_value`` (permutation test of "unrelated").
    """

    name: ClassVar[str] = "cka"
    obs: Obs
    layer: int | str
    other_layer: int | str | None = None
    reference: str | None = None
    n_boot: int = 1000
    n_permutations: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs", _obs_field(self.obs))
        _check_layer(self.layer)
        if (self.other_layer is None) == (self.reference is None):
            raise RliError("CKA needs exactly one of other_layer= (a layer of the same checkpoint) or reference= "
                           "(another checkpoint file, compared at the same layer)")
        if self.other_layer is not None:
            _check_layer(self.other_layer, "other_layer")

    def inputs_digest(self) -> str:
        extra = "" if self.reference is None else _sha256_file(Path(self.reference))
        return hashlib.sha256(f"{super().inputs_digest()}\n{extra}".encode()).hexdigest()

    def run(self, policy: Any, *, trust: bool = False, cache: ObsCache | None = None) -> list[Row]:
        from rli.capture import capture
        from rli.loading import load_policy
        from rli.similarity import cka

        obs = self._obs(self.obs, policy, trust, cache)
        a = capture(policy, obs, [self.layer])[self.layer]
        if self.reference is not None:
            other = load_policy(self.reference, trust=trust)
            b = capture(other, obs, [self.layer])[self.layer]
        else:
            assert self.other_layer is not None  # checked in __post_init__
            b = capture(policy, obs, [self.other_layer])[self.other_layer]
        labels = getattr(obs, "labels", {})
        groups = labels.get("episode") if hasattr(labels, "get") else None
        result = cka(a, b, groups=groups, n_boot=self.n_boot, n_permutations=self.n_permutations,
                                    seed=self.seed)
        target = self.reference if self.reference is not None else str(self.other_layer)
        layer = _layer_label(policy.layer(self.layer).name, policy.layer(self.layer).index)
        return [self._row("cka", result.value, result.ci, layer=layer, target=target),
                self._row("p_value", result.p_value, layer=layer, target=target)]


@dataclass(frozen=True)
class Custom(Spec):
    """Your own analysis, named ``"module:function"``: ``function(policy, **kwargs)`` returns rows.

    Each row is a dict with ``metric`` and ``value`` and optionally ``layer``, ``target``,
    ``ci_low``, ``ci_high``. The function is imported in the worker that runs it (so it
    must be importable there); outside the ``rli`` package only with ``trust=True``.
    """

    name: ClassVar[str] = "custom"
    call: str
    kwargs: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.call, str) or ":" not in self.call:
            raise RliError(f"Custom needs call='module:function', not {self.call!r}")
        kwargs = self.kwargs
        if isinstance(kwargs, Mapping):
            kwargs = tuple(sorted((str(k), _freeze(v, f"Custom keyword {k}")) for k, v in kwargs.items()))
        object.__setattr__(self, "kwargs", tuple(kwargs))

    def to_dict(self) -> dict[str, Any]:
        return {"analysis": self.name, "call": self.call, "kwargs": {k: _thaw(v) for k, v in self.kwargs}}

    def run(self, policy: Any, *, trust: bool = False, cache: ObsCache | None = None) -> list[Row]:
        module_name, _, function_name = self.call.partition(":")
        if module_name != "rli" and not module_name.startswith("rli.") and not trust:
            raise RliError(f"the analysis {self.call!r} would import and run code outside rli; pass trust=True "
                           "(--trust) if you trust it")
        try:
            function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as err:
            raise RliError(f"cannot find the analysis {self.call!r}: {err}") from None
        made = function(policy, **{k: _thaw(v) for k, v in self.kwargs})
        rows = []
        for item in made:
            if not isinstance(item, Mapping) or "metric" not in item or "value" not in item:
                raise RliError(f"{self.call} must return dicts with 'metric' and 'value', got {item!r}")
            unknown = sorted(set(item) - {"metric", "value", "layer", "target", "ci_low", "ci_high"})
            if unknown:
                raise RliError(f"{self.call} returned unknown key(s) {', '.join(unknown)}")
            row = self._row(str(item["metric"]), item["value"], layer=item.get("layer"), target=item.get("target"))
            row["ci_low"], row["ci_high"] = item.get("ci_low"), item.get("ci_high")
            rows.append(row)
        return rows


def _int_tuple(value: Any, what: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, int) else value
    if not isinstance(items, Sequence) or isinstance(items, str) or not items or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise RliError(f"{what} must be a non-empty list of integers, not {value!r}")
    return tuple(items)


@dataclass(frozen=True)
class Interrogate(Spec):
    """:func:`rli.interrogate`, the four-step protocol, as tidy rows (``analysis = "interrogate"``).

    Rows: step 1, ``r2`` (with its CI) and ``selectivity`` (with its CI) at every actor layer
    for the target; step 2 (with ``sensors``), ``polarity_r2_normal`` (CI),
    ``polarity_r2_inverted`` and ``polarity_drop`` (CI) at the chosen layer; step 3,
    ``ablation_drop`` and ``ablation_relative_drop`` (paired CIs) and ``ablation_adjusted_p``
    (Holm over the curve) for each ``k``, the ``target`` column naming the directions removed
    (``"pc1"``, ``"pc1-2"``, …); step 4, ``minimal_k`` (the subspace's dimension),
    ``subspace_found`` (1 or 0: confirmed on fresh seeds), ``subspace_relative_drop`` (the
    reported comparison's relative drop, with its CI) and ``subspace_explained_variance``.

    Settings left ``None`` come, as in :func:`rli.interrogate`, from the checkpoint's card (its
    content is part of the store key), else the protocol's defaults.
    """

    name: ClassVar[str] = "interrogate"
    env: str | None = None
    target: str | None = None
    layer: int | str | None = None
    sensors: tuple[int, ...] | None = None
    probe_obs: Obs | None = None
    polarity_obs: Obs | None = None
    episodes: int = defaults.EPISODES
    seed: int = 0
    n_obs: int = defaults.N_OBS
    obs_episodes: int = defaults.OBS_EPISODES
    ks: tuple[int, ...] = defaults.KS
    tolerance: float = defaults.TOLERANCE
    candidates: int = defaults.CANDIDATES
    method: str = "ordered"

    def __post_init__(self) -> None:
        for name in ("probe_obs", "polarity_obs"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _obs_field(getattr(self, name)))
        if self.layer is not None:
            _check_layer(self.layer)
        for name in ("env", "target"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise RliError(f"{name} must be a string (serialisable), not {type(getattr(self, name)).__name__}")
        object.__setattr__(self, "sensors", _int_tuple(self.sensors, "sensors"))
        object.__setattr__(self, "ks", _int_tuple(self.ks, "ks"))
        _freeze(self.tolerance, "tolerance")

    def policy_inputs(self, policy: Any) -> str:
        """SHA-256 of the checkpoint's card (``<stem>.json``), whose settings fill those left ``None``."""
        source = getattr(policy, "source", "") or ""
        card = Path(source).with_suffix(".json") if source else None
        return _sha256_file(card) if card is not None and card.is_file() else ""

    def run(self, policy: Any, *, trust: bool = False, cache: ObsCache | None = None) -> list[Row]:
        from rli.protocol import interrogate

        options: dict[str, Any] = {name: getattr(self, name) for name in ("env", "target", "layer")}
        options["sensors"] = None if self.sensors is None else list(self.sensors)
        for name in ("probe_obs", "polarity_obs"):
            obs = getattr(self, name)
            options[name] = None if obs is None else self._obs(obs, policy, trust, cache)
        report = interrogate(policy, **options, episodes=self.episodes, seed=self.seed, n_obs=self.n_obs,
                             obs_episodes=self.obs_episodes, ks=list(self.ks), tolerance=self.tolerance,
                             candidates=self.candidates, method=self.method, trust=trust, progress=False)
        return self.rows(report)

    def rows(self, report: Any) -> list[Row]:
        """The rows of an :class:`rli.protocol.Report` (what :meth:`run` returns)."""
        rows = []
        for result in report.profile.results:
            layer = _layer_label(result.layer, result.layer_index)
            rows.append(self._row(result.metric, result.score, result.ci, layer=layer, target=result.target))
            if result.selectivity is not None:
                rows.append(self._row("selectivity", result.selectivity, result.selectivity_ci, layer=layer,
                                      target=result.target))
        chosen = _layer_label(report.probe.layer, report.probe.layer_index)
        target = report.probe.target
        if report.polarity is not None:
            p = report.polarity
            rows += [self._row("polarity_r2_normal", p.r2_normal, p.r2_normal_ci, layer=chosen, target=target),
                     self._row("polarity_r2_inverted", p.r2_inverted, layer=chosen, target=target),
                     self._row("polarity_drop", p.drop, p.drop_ci, layer=chosen, target=target)]
        curve = report.ablation
        for k, comparison, adjusted in zip(curve.values, curve.comparisons, curve.adjusted_p_values):
            removed = "pc1" if int(k) == 1 else f"pc1-{int(k)}"
            rows.append(self._row("ablation_drop", comparison.drop, comparison.ci, layer=chosen, target=removed))
            if comparison.relative_drop is not None:
                rows.append(self._row("ablation_relative_drop", comparison.relative_drop, comparison.relative_ci,
                                      layer=chosen, target=removed))
            rows.append(self._row("ablation_adjusted_p", adjusted, layer=chosen, target=removed))
        search = report.subspace
        rows += [self._row("minimal_k", search.k, layer=chosen),
                 self._row("subspace_found", float(search.found), layer=chosen)]
        if search.comparison.relative_drop is not None:
            rows.append(self._row("subspace_relative_drop", search.comparison.relative_drop,
                                  search.comparison.relative_ci, layer=chosen))
        rows.append(self._row("subspace_explained_variance", search.explained_variance, layer=chosen))
        return rows


SPECS: dict[str, type[Spec]] = {cls.name: cls for cls in (Probe, Profile, Polarity, Ablation, CKA, Custom,
                                                          Interrogate)}


def spec_from_dict(data: Mapping[str, Any]) -> Spec:
    """The spec written by :meth:`Spec.to_dict` (also as read from a card's JSON/TOML).

    Example:
        >>> spec_from_dict({"analysis": "profile", "obs": {"env": "CartPole-v1", "n": 200, "episodes": 5},
        ...                 "target": "obs[2]"}).name
        'profile'
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("analysis"), str):
        raise RliError(f"an analysis spec must be an object with an 'analysis' name ({', '.join(SPECS)}), "
                       f"not {data!r}")
    cls = SPECS.get(data["analysis"])
    if cls is None:
        raise RliError(f"unknown analysis {data['analysis']!r}; known: {', '.join(SPECS)}")
    options = {k: v for k, v in data.items() if k != "analysis"}
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - known)
    if unknown:
        raise RliError(f"analysis {data['analysis']!r}: unknown setting(s) {', '.join(unknown)}; "
                       f"known: {', '.join(sorted(known))}")
    for name in ("layers", "sensors", "ks"):
        if isinstance(options.get(name), list):
            options[name] = tuple(options[name])
    try:
        return cls(**options)
    except TypeError as err:
        raise RliError(f"analysis {data['analysis']!r}: {err}") from None


def check_specs(analyses: Any) -> tuple[Spec, ...]:
    """``analyses`` (a spec, a dict, or a list of them) as a tuple of distinct specs; :class:`RliError` if none."""
    items = [analyses] if isinstance(analyses, (Spec, Mapping)) else analyses
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise RliError("analyses must be a spec (e.g. rli.runs.Profile(obs=..., target=...)) or a non-empty list "
                       f"of specs, not {analyses!r}")
    out: list[Spec] = []
    for item in items:
        spec = spec_from_dict(item) if isinstance(item, Mapping) else item
        if not isinstance(spec, Spec):
            raise RliError(f"each analysis must be an rli.runs spec or its dict, not {type(item).__name__}")
        if spec not in out:
            out.append(spec)
    return tuple(out)
