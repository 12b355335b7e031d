"""The interrogation run: :func:`interrogate` settles the setup, then runs one stage per step → :class:`Report`.

Stages, in order: the visited observations, (1) the layer profile, (2) polarity
inversion, (3) the ablation curve, (4) the minimal subspace, then the causal evidence
(attribution, activation patching; ``causal=False`` skips both). Each stage's time is
recorded in ``Report.meta["timings_s"]``.
"""

from __future__ import annotations

import contextlib
import datetime
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rli import checks, defaults
from rli.capture import capture
from rli.envs_util import resolve_env
from rli.errors import RliError
from rli.observations import ObsSet
from rli.polarity import PolarityResult, polarity_test
from rli.policy import Layer, LayerSpec, Policy
from rli.probes import LayerProfile, probe_layers
from rli.progress import stage_display
from rli.protocol.report import Report
from rli.protocol.setup import (
    Setup,
    check_names,
    choose_layer,
    need_env,
    resolve_setup,
    settle_target,
    step_obs,
    visited_obs,
    with_target,
)
from rli.subspace import fit_pca
from rli.sweeps import ablation_curve, minimal_subspace
from rli.targets import obs_entry

#: The protocol's defaults (the CLI's too), from :mod:`rli.defaults`: paired episodes per comparison, visited
#: observations kept, and the whole episodes they are spread over (enough episodes for probes that split by episode).
DEFAULT_KS = defaults.KS
DEFAULT_EPISODES = defaults.EPISODES
DEFAULT_N_OBS = defaults.N_OBS
DEFAULT_OBS_EPISODES = defaults.OBS_EPISODES


def interrogate(
    policy: Any,
    env: str | None = None,
    *,
    target: str | None = None,
    layer: LayerSpec | None = None,
    sensors: Sequence[int] | None = None,
    probe_obs: Any = None,
    polarity_obs: Any = None,
    grid_axes: Sequence[Mapping[str, Any]] | None = None,
    target_unit: str | None = None,
    episodes: int = DEFAULT_EPISODES,
    seed: int = 0,
    n_obs: int = DEFAULT_N_OBS,
    obs_episodes: int = DEFAULT_OBS_EPISODES,
    ks: Sequence[int] = DEFAULT_KS,
    tolerance: float = defaults.TOLERANCE,
    candidates: int = defaults.CANDIDATES,
    method: str = "ordered",
    causal: bool = True,
    trust: bool = False,
    progress: bool | None = None,
) -> Report:
    """Run the four-step interrogation protocol on ``policy``, then the causal evidence → :class:`Report`.

    Args:
        policy: a checkpoint path (its card ``<stem>.json``, if any, supplies the
            defaults) or a :class:`~rli.Policy` (its card too, when it was loaded from a file).
        env: gymnasium id the policy acts in (default: the card's).
        target: label to probe (default: the card's, else the first numeric ``info``
            entry the environment reports); ``"obs[I]"`` probes observation entry I.
        layer: the layer of steps 1–4 (default: the card's, else the last hidden
            layer of the actor trunk, the one before the output layer).
        sensors: observation indices negated in step 2 (default: the card's; without
            any, step 2 is skipped and the report says so).
        probe_obs, polarity_obs: observations of steps 1 and 2 (an ObsSet, a ``.npz``
            path, ``"module:function"``, or a card spec). Default: the card's, else the
            ``n_obs`` observations the policy visits (polarity: the probe observations).
        grid_axes, target_unit: how the heat map labels its axes and colour bar.
        episodes: paired episodes per comparison (steps 3 and 4); episode *i* uses seed
            ``seed + i``.
        seed: seeds the probe's folds and controls, the evaluation episodes and the causal
            steps' subsamples; the visited observations come from the episodes that follow
            those of step 4's selection and confirmation (seeds from ``seed + 2·episodes``),
            so they never share a seed with an evaluation.
        n_obs: how many visited observations (probe, PCA fit, mean of the kept subspace).
        obs_episodes: the whole episodes those observations are spread over
            (:meth:`rli.ObsSet.from_rollouts` with ``episodes=``): the probe splits them
            by episode, so it needs at least as many episodes as folds.
        ks: numbers of top principal directions removed in step 3 (must start at 1).
        tolerance, candidates, method: step 4 (:func:`rli.minimal_subspace`);
            ``method="greedy"`` is the paper's search, ``"ordered"`` is faster.
        causal: run the causal evidence after step 4 (:mod:`rli.protocol.evidence`):
            integrated gradients of the action over the probe observations, and activation
            patching of every actor layer (and the chosen layer's units) from the
            sensors-negated (or permuted) polarity observations. ``False`` skips both and
            the report says so.
        trust: allow unpickling the checkpoint and calling observation functions outside rli.
        progress: progress display on stderr (default: only on a terminal).

    Example:
        >>> import torch, torch.nn as nn, rli
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)), env="CartPole-v1")
        >>> report = rli.interrogate(policy, "CartPole-v1", target="obs[2]", sensors=[2], episodes=3, n_obs=200,
        ...                          ks=[1, 2], candidates=2, progress=False)
        >>> report.probe.layer_index, report.sources["layer"], len(report.ablation.values)
        (1, 'default', 2)
        >>> report.patching.metric, report.causal["patching"]["counterfactual_kind"]
        ('action_agreement', 'sensors-negated')
    """
    started = time.perf_counter()
    ks = _check_arguments(episodes, obs_episodes, method, tolerance, candidates, ks, causal)
    given = {"env": env, "target": target, "layer": layer, "sensors": None if sensors is None else list(sensors),
             "probe_obs": probe_obs, "polarity_obs": polarity_obs, "grid_axes": grid_axes, "target_unit": target_unit}
    setup = resolve_setup(policy, trust, given)
    run = _Run(setup, need_env(setup, "the ablation steps run episodes"), choose_layer(setup), int(seed), trust, {})
    given_probe = check_names(setup, trust)  # names are checked before any work
    with stage_display("rli interrogate", progress) as stage:  # evaluations show their bars beneath it
        stage("collecting the observations the policy visits")
        with _timed(run, "rollouts"):
            rollout_seed = run.seed + 2 * int(episodes)  # after step 4's selection and confirmation seeds
            rollouts, rollout_text = visited_obs(setup, run.env, n=n_obs, seed=rollout_seed, episodes=obs_episodes)
            name = settle_target(setup, run.env, rollouts, rollout_seed)
            probe_set = _probe_set(setup, given_probe or (rollouts, rollout_text), name)
        stage("step 1/4, probing every layer")
        with _timed(run, "probe"):
            profile, heatmap = _probe_step(run, probe_set, name)
        stage("step 2/4, polarity inversion")
        with _timed(run, "polarity"):
            polarity_set, polarity = _polarity_step(run, probe_set, name)
        stage("step 3/4, ablating principal directions")
        with _timed(run, "ablation"):
            curve = ablation_curve(run.policy, run.env, run.layer, rollouts, ks=ks, episodes=episodes, seed=run.seed,
                                   progress=progress)
            scatter = _scatter(run, rollouts, rollout_text, probe_set, name)
        stage("step 4/4, searching the minimal subspace")
        with _timed(run, "subspace"):
            search = minimal_subspace(run.policy, run.env, run.layer, rollouts, tolerance=tolerance,
                                      candidates=candidates, method=method, episodes=episodes, seed=run.seed,
                                      progress=progress)
        evidence = _causal_steps(run, polarity_set, stage) if causal else _skipped_causal()
    settings = setup.settings
    env_name = run.env if isinstance(run.env, str) else resolve_env(run.env).name  # JSON-able: a factory by its name
    settings.update(env=env_name, rollout_obs=rollout_text, episodes=int(episodes), seed=run.seed,
                    rollout_seed=rollout_seed, n_obs=int(n_obs), obs_episodes=int(obs_episodes), ks=list(ks),
                    tolerance=tolerance, candidates=int(candidates), method=method, causal=causal)
    return Report(
        policy=run.policy.source or repr(run.policy), fingerprint=run.policy.fingerprint, settings=settings,
        sources=setup.sources, profile=profile, probe=profile[run.layer.name], polarity=polarity, ablation=curve,
        subspace=search, meta=_meta(started, run.timings, setup), probe_obs=probe_set, heatmap=heatmap,
        scatter=scatter, **evidence)


@dataclass(frozen=True)
class _Run:
    """What every stage needs: the setup, the environment, the chosen layer, the seed, and the stage timings."""

    setup: Setup
    env: Any
    layer: Layer
    seed: int
    trust: bool
    timings: dict[str, float]

    @property
    def policy(self) -> Policy:
        return self.setup.policy


@contextlib.contextmanager
def _timed(run: _Run, name: str) -> Iterator[None]:
    """Record the block's wall time as ``run.timings[name]``."""
    tick = time.perf_counter()
    try:
        yield
    finally:
        run.timings[name] = time.perf_counter() - tick


# ------------------------------------------------------------------------------------------ stages
def _probe_set(setup: Setup, given: tuple[ObsSet, str], name: str) -> ObsSet:
    """The probe observations with the target as a label (one column), recorded in ``settings``."""
    if "probe_obs" not in setup.sources:
        setup.sources["probe_obs"] = "default"
    probe_set = with_target(given[0], name, what=f"the probe observations ({given[1]})")
    setup.settings["probe_obs"] = given[1]
    if probe_set.labels[name].ndim != 1:
        raise RliError(f"target {name!r} has {probe_set.labels[name].shape[1]} columns; the protocol probes one")
    return probe_set


def _probe_step(run: _Run, probe_set: ObsSet, name: str) -> tuple[LayerProfile, np.ndarray | None]:
    """Step 1: the layer profile with controls, and the held-out predictions over a 2-D grid (for the heat map)."""
    profile = probe_layers(run.policy, probe_set, name, seed=run.seed)
    if len(probe_set.meta.get("grid_shape", ())) != 2:
        return profile, None
    from rli.plots import heldout_predictions

    return profile, heldout_predictions(run.policy, probe_set, profile[run.layer.name])


def _polarity_step(run: _Run, probe_set: ObsSet, name: str) -> tuple[ObsSet, PolarityResult | None]:
    """Step 2: the polarity observations (default: the probe's), and the inversion test when sensors are given."""
    settings, sources = run.setup.settings, run.setup.sources
    given = step_obs(run.setup, "polarity", run.trust)
    if given is None:
        given, sources["polarity_obs"] = (probe_set, settings["probe_obs"]), "default: the probe observations"
    polarity_set = with_target(given[0], name, what=f"the polarity observations ({given[1]})")
    settings["polarity_obs"] = given[1]
    if settings.get("sensors") is None:
        return polarity_set, None
    return polarity_set, polarity_test(run.policy, polarity_set, name, settings["sensors"], run.layer, seed=run.seed)


def _scatter(run: _Run, rollouts: ObsSet, rollout_text: str, probe_set: ObsSet, name: str) -> dict[str, Any]:
    """Step 3's PCA scatter: the layer's activations on the visited observations (on the probe observations when the
    target is not a label of the visited ones), the two principal directions and their explained variance."""
    acts = capture(run.policy, rollouts, [run.layer.name])[run.layer.name]
    basis, ratios = fit_pca(acts, 2)
    scatter_obs, source = rollouts, rollout_text
    if name not in rollouts.labels and obs_entry(name) is None:
        scatter_obs, source = probe_set, run.setup.settings["probe_obs"]
        acts = capture(run.policy, scatter_obs, [run.layer.name])[run.layer.name]
    values = with_target(scatter_obs, name).labels[name]
    return {"acts": acts, "values": values, "basis": basis, "ratios": ratios.tolist(), "source": source}


def _causal_steps(run: _Run, polarity_set: ObsSet, stage: Callable[[str], None]) -> dict[str, Any]:
    """Attribution and patching on the polarity observations, where the sensors vary (see :mod:`rli.protocol.evidence`).

    Integrated gradients from the zero observation give nothing to an input that is 0 on the attributed rows, as
    the sensors are on the formation card's probe grid; the polarity observations are the ones the sensors are
    tested on (the probe observations when no others are given)."""
    from rli.protocol import evidence  # captum loads only when these steps run

    settings = run.setup.settings
    sensors = settings.get("sensors")
    stage("causal evidence, integrated gradients of the action")
    with _timed(run, "attribution"):
        attribution, how_attribution = evidence.attribution_evidence(
            run.policy, polarity_set, settings["polarity_obs"], sensors, seed=run.seed)
    stage("causal evidence, activation patching")
    with _timed(run, "patching"):
        layers, units, how_patching = evidence.patching_evidence(
            run.policy, polarity_set, settings["polarity_obs"], sensors, run.layer, seed=run.seed)
    return {"attribution": attribution, "patching": layers, "patching_units": units,
            "causal": {"attribution": how_attribution, "patching": how_patching}}


def _skipped_causal() -> dict[str, Any]:
    why = "causal=False (--no-causal) was given; run rli.attribute and rli.patch_sweep directly for this evidence"
    return {"causal": {"attribution": {"skipped": why}, "patching": {"skipped": why}}}


# ------------------------------------------------------------------------------------------ checks and metadata
def _check_arguments(episodes: Any, obs_episodes: Any, method: Any, tolerance: Any, candidates: Any,
                     ks: Sequence[int], causal: Any) -> tuple[int, ...]:
    """Check :func:`interrogate`'s numeric and method arguments (before any work) → ``ks`` as a tuple."""
    checks.count(episodes, "episodes", minimum=2, hint=" (paired comparisons)")
    checks.count(obs_episodes, "obs_episodes", minimum=2, hint=" (the probe splits the visited observations by "
                 f"episode; default {DEFAULT_OBS_EPISODES})")
    if method not in ("greedy", "ordered"):
        raise RliError(f"method must be 'greedy' or 'ordered', not {method!r}")
    if not 0 <= checks.real(tolerance, "tolerance", hint=" (a fraction of the baseline return in [0, 1))") < 1:
        raise RliError(f"tolerance is a fraction of the baseline return in [0, 1), got {tolerance}")
    checks.count(candidates, "candidates")
    if not isinstance(causal, bool):
        raise RliError(f"causal must be True (run attribution and patching after step 4) or False, not {causal!r}")
    ks = tuple(int(k) for k in ks)
    if not ks or ks[0] != 1 or list(ks) != sorted(set(ks)):
        raise RliError(f"ks must be increasing numbers of directions starting at 1 (PC1 alone), got {list(ks)}")
    return ks


def _meta(started: float, timings: dict[str, float], setup: Setup) -> dict[str, Any]:
    import gymnasium
    import torch

    from rli import __version__

    return {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rli_version": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "gymnasium": gymnasium.__version__, "machine": platform.machine(),
            "card": None if setup.card is None else str(setup.card),
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "wall_time_s": round(time.perf_counter() - started, 2)}
