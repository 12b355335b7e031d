"""The plugin's fixtures: ``rli_policy``, ``rli_obs``, ``rli_env`` and ``rli``, which binds them to the assertions.

Settings come, most specific first, from ``@pytest.mark.rli(...)``, the command line
(``--rli-policy`` ...) and ini keys (``rli_policy`` ...). Policies and observation
sets are loaded once per session. Importing this module imports neither torch nor rli.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


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
        key: tuple[Any, ...] = ("rollouts", policy.fingerprint, repr(env), size, seed, episodes)
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


class BoundAssertion:
    """An assertion of :mod:`pytest_rli.assertions` (or of ``module``) as a method of the ``rli`` fixture, derived from the plain
    function: its name, docstring, defaults and signature are the function's, with ``positional`` accepted by
    position, ``fixtures`` (policy / obs / env) defaulting to this test's, ``target`` (when ``target=True``) to
    ``@pytest.mark.rli(target=...)``, ``episodes`` and ``seed`` (when ``rollouts=True``) to the ``rli_episodes`` /
    ``rli_seed`` ini keys, and the ``paths`` arguments resolved against the rootdir.

    The plain function is imported when the method is first looked up (importing this module imports no rli).
    """

    def __init__(self, positional: tuple[str, ...], fixtures: tuple[str, ...], *, target: bool = False,
                 rollouts: bool = False, paths: tuple[str, ...] = (), module: str = "pytest_rli.assertions") -> None:
        self.positional, self.fixtures, self.target, self.rollouts, self.paths, self.module = (
            positional, fixtures, target, rollouts, paths, module)
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def signature(self, plain: Any) -> inspect.Signature:
        """The method's signature: the plain function's, ``positional`` first, the bound arguments optional."""
        params = inspect.signature(plain).parameters
        optional = set(self.fixtures) | ({"target"} if self.target else set())
        first = [params[name].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                      default=None if name in optional else params[name].default)
                 for name in self.positional]
        rest = [param.replace(default=None) if name in optional else param
                for name, param in params.items() if name not in self.positional]
        return inspect.Signature(first + rest, return_annotation=inspect.signature(plain).return_annotation)

    def __get__(self, binding: RliBinding | None, owner: type | None = None) -> Any:
        if binding is None:
            return self
        plain = getattr(importlib.import_module(self.module), self.name)
        signature = self.signature(plain)
        extra = next((p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD), None)

        def method(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            arguments = dict(signature.bind(*args, **kwargs).arguments)
            arguments.update(arguments.pop(extra, {}) if extra else {})
            return binding._call(self, plain, arguments)

        functools.update_wrapper(method, plain)
        method.__signature__ = signature  # type: ignore[attr-defined]  # what help() and inspect show
        return method


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

    def _call(self, bound: BoundAssertion, plain: Any, kwargs: dict[str, Any]) -> Any:
        __tracebackhide__ = True
        if bound.target:
            kwargs["target"] = self._target(kwargs.get("target"))
        if bound.rollouts:
            self._rollout_defaults(kwargs)
        for name in bound.paths:  # a relative path is resolved against the rootdir
            if isinstance(kwargs.get(name), (str, Path)):
                kwargs[name] = _resolve_path(self._request.config, str(kwargs[name]))
        fixtures = bound.fixtures
        if kwargs.get("over") == "seeds":
            fixtures = self._seed_defaults(kwargs, fixtures)
        return plain(**self._bound(kwargs, *fixtures))

    def _seed_defaults(self, kwargs: dict[str, Any], fixtures: tuple[str, ...]) -> tuple[str, ...]:
        """``over="seeds"``: checkpoints from the ``rli_checkpoints`` ini key and the ``rli_run`` store, unless given;
        the policy (whose step picks the seeds' step when ``step`` is not given) only when one is configured."""
        from pytest_rli.runs import checkpoint_pattern, store_dir

        config = self._request.config
        if kwargs.get("checkpoints") is None:
            kwargs["checkpoints"] = checkpoint_pattern(config)
        elif isinstance(kwargs["checkpoints"], (str, Path)):
            kwargs["checkpoints"] = str(_resolve_path(config, str(kwargs["checkpoints"])))
        if kwargs.get("store") is None:
            kwargs["store"] = store_dir(config, self._request.getfixturevalue("tmp_path_factory"))
        if kwargs.get("policy") is None and setting(self._request, "policy") is None:
            kwargs["policy"] = None
            return tuple(name for name in fixtures if name != "policy")
        return fixtures

    assert_probe_r2 = BoundAssertion(("layer", "min", "target"), ("policy", "obs"), target=True)
    assert_probe_selective = BoundAssertion(("layer", "target", "min_selectivity"), ("policy", "obs"), target=True)
    assert_ablation_degrades = BoundAssertion(("layer", "direction", "min_drop"), ("policy", "env", "obs"),
                                              rollouts=True)
    assert_ablation_preserves = BoundAssertion(("layer", "direction", "max_drop"), ("policy", "env", "obs"),
                                               rollouts=True)
    assert_subspace_sufficient = BoundAssertion(("layer", "k", "max_drop"), ("policy", "env", "obs"), rollouts=True)
    assert_polarity_inversion = BoundAssertion(("layer", "sensors", "target", "min_drop"), ("policy", "obs"),
                                               target=True)
    assert_representation_similar = BoundAssertion(("layer", "reference", "min_cka"), ("policy", "obs"),
                                                   paths=("reference",))
    assert_attribution_in = BoundAssertion((), ("policy", "obs"),
                                           module="pytest_rli.attribution_assertions")
    assert_steering_changes = BoundAssertion(("layer", "vector", "min_effect"), ("policy", "env"),
                                             rollouts=True, module="pytest_rli.steering_assertions")
    #: training runs: ``records`` is a sweep's table (``rli_run.sweep(...)``) or its ``to_records()``
    assert_emerges_by = BoundAssertion(("records", "step"), (), module="pytest_rli.run_assertions")
    assert_stable_across = BoundAssertion(("records",), (), module="pytest_rli.run_assertions")


@pytest.fixture
def rli(request: pytest.FixtureRequest) -> RliBinding:
    """Interpretability assertions bound to this test's ``rli_policy``, ``rli_obs`` and ``rli_env``.

    ``rli.assert_probe_r2(layer=5, target="upwash", min=0.95)``,
    ``rli.assert_ablation_degrades(layer=5, direction="pc1", min_drop=0.05)``, … —
    see :mod:`pytest_rli.assertions`. ``target`` defaults to ``@pytest.mark.rli(target=...)``;
    ``episodes`` and ``seed`` to the ``rli_episodes`` / ``rli_seed`` ini keys.
    """
    return RliBinding(request)
