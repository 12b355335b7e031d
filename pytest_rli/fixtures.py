"""The plugin's fixtures: ``rli_policy``, ``rli_obs``, ``rli_env`` and ``rli``, which binds them to the assertions.

Settings come, most specific first, from ``@pytest.mark.rli(...)``, the command line
(``--rli-policy`` ...) and ini keys (``rli_policy`` ...). Policies and observation
sets are loaded once per session. Importing this module imports neither torch nor rli.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

_UNSET = object()


@dataclass
class SessionCache:
    """Policies, observation sets and env specs loaded in this process, by their configuration."""

    policies: dict[Any, Any] = field(default_factory=dict)
    observations: dict[Any, Any] = field(default_factory=dict)
    envs: set[Any] = field(default_factory=set)


CACHE_KEY = pytest.StashKey[SessionCache]()


def setting(request: pytest.FixtureRequest, name: str) -> Any:
    """``name`` from the closest ``rli`` marker, else ``--rli-<name>``, else the ``rli_<name>`` ini key (or None)."""
    for marker in request.node.iter_markers("rli"):
        if marker.kwargs.get(name) is not None:
            return marker.kwargs[name]
    option = request.config.getoption(f"rli_{name}", default=None)
    if option not in (None, ""):
        return option
    value = request.config.getini(f"rli_{name}")
    return value if value not in (None, "") else None


def setting_source(request: pytest.FixtureRequest, name: str) -> str:
    """Where :func:`setting` found ``name``: the marker, the ``--rli-<name>`` option or the ``rli_<name>`` ini key."""
    for marker in request.node.iter_markers("rli"):
        if marker.kwargs.get(name) is not None:
            return f"@pytest.mark.rli({name}=...)"
    if request.config.getoption(f"rli_{name}", default=None) not in (None, ""):
        return f"--rli-{name}"
    return f"the rli_{name} ini key"


def _fail(message: str) -> None:
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


def _resolve_path(config: pytest.Config, spec: str) -> Path:
    path = Path(spec)
    return path if path.is_absolute() else config.rootpath / path


def _import_object(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.fixture
def rli_policy(request: pytest.FixtureRequest) -> Any:
    """The policy under test, an ``rli.Policy``.

    Configured by ``@pytest.mark.rli(policy=...)`` (a path or a loaded policy), the
    ``--rli-policy`` option or the ``rli_policy`` ini key; paths are relative to the
    rootdir. ``rli_trust = true`` allows full unpickling (only for files you trust).
    Loaded once per session. Override it in a conftest to build the policy yourself.
    """
    spec = setting(request, "policy")
    if spec is None:
        _fail("rli_policy is not configured: set the rli_policy ini key, pass --rli-policy, "
              "use @pytest.mark.rli(policy=...) or override the rli_policy fixture")
    import rli

    if isinstance(spec, rli.Policy):
        return spec
    cache = request.config.stash[CACHE_KEY].policies
    path = _resolve_path(request.config, str(spec))
    if path not in cache:
        problem = None
        try:
            cache[path] = rli.load_policy(path, trust=request.config.getini("rli_trust"))
        except rli.RliError as err:
            problem = str(err)
        except ModuleNotFoundError as err:  # unpickling (rli_trust) a class whose module is not importable
            problem = (f"cannot import module {err.name!r}, which {path} needs; install it or add the folder that "
                       "holds it to the pythonpath ini key")
        if problem is not None:
            _fail(f"rli_policy: {problem}")
    return cache[path]


@pytest.fixture
def rli_env(request: pytest.FixtureRequest) -> Any:
    """The environment for rollouts: a gymnasium id (or what ``@pytest.mark.rli(env=...)`` gives, e.g. a factory).

    Configured by the marker, ``--rli-env`` or the ``rli_env`` ini key. Override it in
    a conftest to return a factory with wrappers.
    """
    spec = setting(request, "env")
    if spec is None:
        _fail("rli_env is not configured: set the rli_env ini key (a gymnasium id), pass --rli-env, "
              "use @pytest.mark.rli(env=...) or override the rli_env fixture")
    import rli
    from rli.envs_util import resolve_env

    checked = request.config.stash[CACHE_KEY].envs
    key = spec if isinstance(spec, str) else id(spec)
    if key not in checked:  # the name is looked up (its module imported) once, before any rollout
        problem = None
        try:
            resolve_env(spec, what=setting_source(request, "env"))
        except rli.RliError as err:
            problem = str(err)
        if problem is not None:
            _fail(f"rli_env: {problem}")
        checked.add(key)
    return spec


@pytest.fixture
def rli_obs(request: pytest.FixtureRequest) -> Any:
    """The observations claims are measured on, an ``rli.ObsSet`` with labels.

    Configured by the marker (an ObsSet, an array, or a spec), ``--rli-obs`` or the
    ``rli_obs`` ini key. A spec is a ``.npz`` written by ``ObsSet.save`` (relative to the
    rootdir) or ``module:function`` returning an ObsSet (e.g. ``rli.envs:probe_grid``).
    Unset, ``rli_obs_size`` observations are collected from ``rli_obs_episodes`` whole
    episodes of the policy in ``rli_env`` (episode *i* seeded ``rli_seed + i``; the
    observations spread evenly over every step visited, see ``rli.ObsSet.from_rollouts``),
    labelled with the env's numeric info entries and their ``episode``, by which
    probes split them.
    """
    import numpy as np

    import rli

    spec = setting(request, "obs")
    if isinstance(spec, (rli.ObsSet, np.ndarray)):
        return spec
    cache = request.config.stash[CACHE_KEY].observations
    if spec is None:
        if setting(request, "env") is None:
            _fail("rli_obs is not configured: set the rli_obs ini key (an ObsSet .npz or module:function), "
                  "configure rli_env to collect observations from rollouts, or override the rli_obs fixture")
        policy = request.getfixturevalue("rli_policy")
        env = request.getfixturevalue("rli_env")
        size, seed = int(request.config.getini("rli_obs_size")), int(request.config.getini("rli_seed"))
        episodes = int(request.config.getini("rli_obs_episodes"))
        key = ("rollouts", policy.fingerprint, repr(env), size, seed, episodes)
        if key not in cache:
            problem = None
            try:
                cache[key] = rli.ObsSet.from_rollouts(env, policy, n=size, seed=seed, episodes=episodes)
            except rli.RliError as err:
                problem = f"rli_obs (collected from rli_obs_episodes = {episodes} episodes of rli_env): {err}"
            if problem is not None:  # failed outside the except block: one line, no "during handling" chain
                _fail(problem)
        return cache[key]
    key = ("spec", str(spec))
    if key not in cache:
        cache[key] = _load_obs(request.config, str(spec))
    return cache[key]


def _load_obs(config: pytest.Config, spec: str) -> Any:
    import rli

    path = _resolve_path(config, spec)
    if path.suffix == ".npz" or path.exists():
        try:
            return rli.ObsSet.load(path)
        except rli.RliError as err:
            _fail(f"rli_obs: {err}")
    if ":" in spec:
        try:
            made = _import_object(spec)
        except (ImportError, AttributeError) as err:
            _fail(f"rli_obs: cannot import {spec!r} ({err})")
        made = made() if callable(made) else made
        return made if isinstance(made, rli.ObsSet) else rli.ObsSet(made)
    _fail(f"rli_obs: {spec!r} is neither an .npz file nor module:function")


class RliBinding:
    """The ``rli`` fixture: the assertions of :mod:`pytest_rli.assertions`, bound to this test's
    policy, observations and environment (each loaded only when an assertion needs it).

    Any assertion also takes ``policy=``, ``obs=`` or ``env=`` to use something else
    for one claim (e.g. a probe grid instead of the session's observations).
    """

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    @property
    def policy(self) -> Any:
        """The ``rli_policy`` fixture's value."""
        return self._request.getfixturevalue("rli_policy")

    @property
    def obs(self) -> Any:
        """The ``rli_obs`` fixture's value."""
        return self._request.getfixturevalue("rli_obs")

    @property
    def env(self) -> Any:
        """The ``rli_env`` fixture's value."""
        return self._request.getfixturevalue("rli_env")

    def _bound(self, kwargs: dict[str, Any], *names: str) -> dict[str, Any]:
        """``kwargs`` plus this test's policy/obs/env for ``names``, unless the caller passed them explicitly."""
        for name in names:
            if kwargs.get(name) is None:
                kwargs[name] = getattr(self, name)
        return kwargs

    def _target(self, target: Any) -> Any:
        if target is not None:
            return target
        found = setting(self._request, "target")
        if found is None:
            _fail("no target: pass target=... or set @pytest.mark.rli(target=...)")
        return found

    def _rollout_defaults(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.setdefault("episodes", int(self._request.config.getini("rli_episodes")))
        kwargs.setdefault("seed", int(self._request.config.getini("rli_seed")))
        return kwargs

    def assert_probe_r2(self, layer: Any, min: float, target: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        """See :func:`pytest_rli.assertions.assert_probe_r2`."""
        __tracebackhide__ = True
        from pytest_rli.assertions import assert_probe_r2

        target = self._target(target)
        return assert_probe_r2(layer=layer, min=min, target=target, **self._bound(kwargs, "policy", "obs"))

    def assert_probe_selective(self, layer: Any, target: Any = None, min_selectivity: float = 0.1,
                               **kwargs: Any) -> Any:
        """See :func:`pytest_rli.assertions.assert_probe_selective`."""
        __tracebackhide__ = True
        from pytest_rli.assertions import assert_probe_selective

        target = self._target(target)
        return assert_probe_selective(layer=layer, target=target, min_selectivity=min_selectivity,
                                      **self._bound(kwargs, "policy", "obs"))

    def assert_ablation_degrades(self, layer: Any, direction: Any = "pc1", min_drop: float = 0.05,
                                 **kwargs: Any) -> Any:
        """See :func:`pytest_rli.assertions.assert_ablation_degrades`."""
        __tracebackhide__ = True
        from pytest_rli.assertions import assert_ablation_degrades

        return assert_ablation_degrades(layer=layer, direction=direction, min_drop=min_drop,
                                        **self._bound(self._rollout_defaults(kwargs), "policy", "env", "obs"))

    def assert_ablation_preserves(self, layer: Any, direction: Any, max_drop: float = 0.05, **kwargs: Any) -> Any:
        """See :func:`pytest_rli.assertions.assert_ablation_preserves`."""
        __tracebackhide__ = True
        from pytest_rli.assertions import assert_ablation_preserves

        return assert_ablation_preserves(layer=layer, direction=direction, max_drop=max_drop,
                                         **self._bound(self._rollout_defaults(kwargs), "policy", "env", "obs"))

    def assert_subspace_sufficient(self, layer: Any, k: int, max_drop: float = 0.05, **kwargs: Any) -> Any:
        """See :func:`pytest_rli.assertions.assert_subspace_sufficient`."""
        __tracebackhide__ = True
        from pytest_rli.assertions import assert_subspace_sufficient

        return assert_subspace_sufficient(layer=layer, k=k, max_drop=max_drop,
                                          **self._bound(self._rollout_defaults(kwargs), "policy", "env", "obs"))

    def assert_polarity_inversion(self, layer: Any, sensors: Any, target: Any = None, min_drop: float = 0.5,
                                  **kwargs: Any) -> Any:
        """See :func:`pytest_rli.assertions.assert_polarity_inversion`."""
        __tracebackhide__ = True
        from pytest_rli.assertions import assert_polarity_inversion

        target = self._target(target)
        return assert_polarity_inversion(layer=layer, sensors=sensors, target=target, min_drop=min_drop,
                                         **self._bound(kwargs, "policy", "obs"))

    def assert_representation_similar(self, layer: Any, reference: Any, min_cka: float = 0.9, **kwargs: Any) -> Any:
        """See :func:`pytest_rli.assertions.assert_representation_similar`; a relative ``reference`` path is
        resolved against the rootdir."""
        __tracebackhide__ = True
        from pytest_rli.assertions import assert_representation_similar

        if isinstance(reference, (str, Path)):
            reference = _resolve_path(self._request.config, str(reference))
        return assert_representation_similar(layer=layer, reference=reference, min_cka=min_cka,
                                             **self._bound(kwargs, "policy", "obs"))


@pytest.fixture
def rli(request: pytest.FixtureRequest) -> RliBinding:
    """Interpretability assertions bound to this test's ``rli_policy``, ``rli_obs`` and ``rli_env``.

    ``rli.assert_probe_r2(layer=5, target="upwash", min=0.95)``,
    ``rli.assert_ablation_degrades(layer=5, direction="pc1", min_drop=0.05)``, … —
    see :mod:`pytest_rli.assertions`. ``target`` defaults to ``@pytest.mark.rli(target=...)``;
    ``episodes`` and ``seed`` to the ``rli_episodes`` / ``rli_seed`` ini keys.
    """
    return RliBinding(request)
