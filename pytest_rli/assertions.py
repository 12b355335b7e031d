"""Interpretability assertions: each measures one claim with rli, records it, and fails with the evidence.

Use them through the ``rli`` fixture (``rli.assert_probe_r2(layer=5, min=0.95)``) or
as plain functions with explicit ``policy=``, ``obs=`` and ``env=``. Every assertion
records its metric (for the session summary, JUnit properties, reports and
baselines) and, under ``--rli-baseline``, fails when the metric regressed beyond the
tolerance even if the absolute threshold still holds.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import rli
from pytest_rli.recording import Metric, current, judge
from pytest_rli.seeds import SeedVerdict, check_over, obs_spec, run_over_seeds
from rli import defaults
from rli.probes import CONTROL_LABELS
from rli.structured_null import check_null
from rli.targets import is_named_array
from rli.tensors import to_numpy

_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_SIZE = 64


def _digest(value: Any) -> str:
    if isinstance(value, rli.ObsSet):
        return value.fingerprint
    if isinstance(value, (str, int, float, type(None))):
        return repr(value)
    if is_named_array(value):  # (name, array): both parts count
        return f"{value[0]!r}:{_digest(value[1])}"
    arr = np.ascontiguousarray(np.asarray(to_numpy(value)))
    return hashlib.sha256(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()).hexdigest()


def _cached(what: str, policy: rli.Policy, obs: Any, target: Any, compute: Any, **options: Any) -> Any:
    """Per-process memo keyed by (policy fingerprint, observations, target, options): a claim asked twice
    in one session (by several tests, or a failure message) is measured once."""
    key = (what, policy.fingerprint, _digest(obs), _digest(target), tuple(sorted((k, _digest(v)) for k, v in
                                                                            options.items())))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = compute()
    _CACHE[key] = value
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _anonymous(target: Any) -> str | None:
    """The digest of an unnamed array target (its metrics are keyed ``...:target``), else ``None``."""
    if target is None or isinstance(target, str) or is_named_array(target):
        return None
    return _digest(target)


def _where(policy: rli.Policy, layer: Any) -> str:
    found = policy.layer(layer)
    alias = f" = actor.{found.index}" if found.index is not None else ""
    return f"layer {layer!r} ({found.name}{alias}, {found.type}, width {found.width})"


def finish(assertion: str, key: str, *, metric: str, value: float, threshold: float, op: str,
            higher_is_better: bool, passed: bool, summary: str, evidence: Sequence[str], ci: Any = None,
            layer: str | None = None, target: str | None = None, tolerance: float | None = None,
            details: dict[str, Any] | None = None, anonymous: str | None = None) -> Metric:
    """Record the metric in the running test (if any), judge it against its baseline, and raise on failure:
    the one recording path of every assertion (also :mod:`pytest_rli.run_assertions`)."""
    __tracebackhide__ = True
    context = current()
    if context is not None and anonymous is not None:
        first = context.anonymous.setdefault(key, anonymous)
        if first != anonymous:
            raise rli.RliError(f"{assertion}: two different unnamed array targets in this test would share the metric "
                               f"key {key!r} (summary, baselines, JUnit), told apart only by their order; name them: "
                               "target=('upwash', values)")
    key = context.key(key) if context is not None else key
    ci = None if ci is None else (float(ci[0]), float(ci[1]))
    verdict = judge(context, key, value, ci, higher_is_better, tolerance)
    record = Metric(assertion=assertion, key=key, metric=metric, value=float(value), threshold=float(threshold),
                    op=op, higher_is_better=higher_is_better, passed=passed and not verdict.regressed, ci=ci,
                    layer=layer, target=target, baseline=verdict.baseline, regressed=verdict.regressed,
                    details=details or {}, baseline_ci=verdict.baseline_ci, change=verdict.change, rule=verdict.rule)
    if context is not None:
        context.records.append(record)
    lines = list(evidence) + verdict.evidence(metric)
    if not passed:
        raise AssertionError("\n".join([summary, *lines]))
    if verdict.regressed:
        raise AssertionError("\n".join([verdict.failure(assertion, metric, value, ci), *lines]))
    return record


# ----------------------------------------------------------------------------------- over="seeds"
_SEED_NOTE = "over='seeds' measures each training seed's checkpoint through rli.runs"


def _need_policy(assertion: str, policy: rli.Policy | None) -> rli.Policy:
    if policy is None:
        raise rli.RliError(f"{assertion}: policy is None; pass the policy (rli.load_policy(...)), or over='seeds' with "
                           "checkpoints= to measure each training seed's checkpoint")
    return policy


def _seed_options(assertion: str, options: dict[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
    """The ``options`` a :mod:`rli.runs` spec takes; any other is an error (a setting must never be dropped)."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise rli.RliError(f"{assertion}: {_SEED_NOTE}, whose spec takes {', '.join(allowed) or 'no options'}; "
                           f"drop {', '.join(unknown)} or measure one checkpoint (over=None)")
    return options


def _over_seeds(assertion: str, spec: Any, metric: str, *, threshold: float, checkpoints: Any, step: Any,
                policy: Any, store: Any, layer: Any, target: Any, what: str, tolerance: float | None) -> SeedVerdict:
    """Run ``spec`` on each training seed's checkpoint, judge the "at least ``threshold``" claim on ``metric`` by
    :func:`pytest_rli.seeds.seed_rule`, and record it through :func:`finish` as one metric with its CI."""
    __tracebackhide__ = True
    verdict = run_over_seeds(assertion, spec, metric, checkpoints=checkpoints, step=step, policy=policy, store=store,
                             min=threshold)
    summary = (f"{assertion} over {len(verdict.values)} training seeds: {what}: the IQM's 95% CI "
               f"[{verdict.ci[0]:.4f}, {verdict.ci[1]:.4f}] lower end {verdict.ci[0]:.4f} is below {threshold:g}")
    finish(assertion, f"{assertion}[over seeds:{layer}:{target}]", metric=f"IQM over seeds of {metric}",
           value=verdict.value, threshold=threshold, op="IQM ci_low >=", higher_is_better=True, passed=verdict.passed,
           summary=summary, evidence=verdict.lines(metric), ci=verdict.ci, layer=None if layer is None else str(layer),
           target=None if target is None else str(target), tolerance=tolerance,
           details={"n": len(verdict.values), "over_seeds": verdict.to_dict()})
    return verdict


# ----------------------------------------------------------------------------------------- probes
def _probe(policy: rli.Policy, obs: Any, target: Any, layer: Any, kind: str, controls: bool,
           **options: Any) -> rli.ProbeResult:
    return _cached("probe", policy, obs, target, lambda: rli.probe(policy, obs, target, layer, kind=kind,
                                                                   controls=controls, **options),
                   layer=policy.layer(layer).name, kind=kind, controls=controls, **options)


def _profile_lines(policy: rli.Policy, obs: Any, target: Any, layer: Any, kind: str, **options: Any) -> list[str]:
    """The layer profile around ``layer`` (two layers either side, no controls): where is the signal if not here?"""
    index = policy.layer(layer).index
    if index is None or kind not in ("ridge", "lasso", "logistic"):
        return []
    trunk = len(policy.actor_layers)
    around = list(range(max(0, index - 2), min(trunk, index + 3)))
    profile = _cached("profile", policy, obs, target, lambda: rli.probe_layers(
        policy, obs, target, layers=around, kind=kind, controls=False, **options), layers=tuple(around), kind=kind,
                      **options)
    lines = ["layer profile around it (held-out score, 95% CI, no controls):"]
    for result in profile.results:
        mark = "  <- asked" if result.layer_index == index else ""
        lines.append(f"  layer {result.layer_index} ({result.layer_type:>6}): {result.score:.3f} "
                     f"[{result.ci[0]:.3f}, {result.ci[1]:.3f}]{mark}")
    return lines


def _probe_evidence(result: rli.ProbeResult) -> list[str]:
    lines = [f"measured: {result.metric} {result.score:.4f}, 95% CI [{result.ci[0]:.4f}, {result.ci[1]:.4f}] "
             f"({result.kind}, split {result.split}, n = {result.n}, seed {result.seed})"]
    for name, value in result.controls.items():
        lines.append(f"control {name}: {value:.4f}")
    if result.selectivity is not None:
        lines.append(f"selectivity: {result.selectivity:+.4f} (vs {result.best_control})")
    lines.extend(f"note: {note}" for note in result.notes)
    return lines


def assert_probe_r2(*, policy: rli.Policy | None, obs: Any, layer: Any, min: float, target: Any,
                    kind: str = "ridge", controls: bool = True, min_selectivity: float | None = None,
                    tolerance: float | None = None, over: str | None = None, checkpoints: Any = None,
                    step: int | str | None = None, store: Any = None,
                    **probe_options: Any) -> rli.ProbeResult | SeedVerdict:
    """Layer ``layer`` decodes ``target``: the lower end of the held-out score's 95% CI is at least ``min``.

    With ``min_selectivity``, the score must also beat the best control (untrained
    network, shuffled labels, raw observation) by that much. Returns the
    :class:`rli.ProbeResult`.

    ``over="seeds"``: the held-out score is measured on one checkpoint per training seed
    (``checkpoints``: a glob, run directory or list; ``step``: a training step, ``"last"``,
    or ``None`` for the step of ``policy`` when it is one of them, else each seed's last),
    through :func:`rli.runs.sweep` and its ``store``; the claim passes iff the lower end of
    the IQM's 95% CI over seeds is at least ``min`` (:func:`pytest_rli.seeds.seed_rule`).
    Returns the :class:`pytest_rli.seeds.SeedVerdict`.

    Example:
        >>> import numpy as np, torch, torch.nn as nn, rli
        >>> from pytest_rli.assertions import assert_probe_r2
        >>> _ = torch.manual_seed(0)
        >>> policy = rli.load_policy(nn.Sequential(nn.Linear(4, 32), nn.Tanh()))
        >>> x = np.random.default_rng(0).normal(size=(500, 4))
        >>> assert_probe_r2(policy=policy, obs=x, layer=1, target=x[:, 0], min=0.9).r2 > 0.9
        True
    """
    __tracebackhide__ = True
    if check_over(over, "assert_probe_r2"):
        from rli.runs.specs import Probe

        if min_selectivity is not None:
            raise rli.RliError("assert_probe_r2: min_selectivity with over='seeds' is a second claim: use "
                               "assert_probe_selective(..., over='seeds') beside it")
        source, name = obs_spec("assert_probe_r2", obs, target, store)
        spec = Probe(obs=source, target=str(name), layer=layer, kind=kind, controls=controls,
                     **_seed_options("assert_probe_r2", probe_options, ("folds", "seed")))
        return _over_seeds("assert_probe_r2", spec, "accuracy" if kind == "logistic" else "r2",
                           threshold=min, checkpoints=checkpoints, step=step,
                           policy=policy, store=store, layer=layer, target=name,
                           what=f"held-out score of {name!r} at layer {layer!r}", tolerance=tolerance)
    policy = _need_policy("assert_probe_r2", policy)
    result = _probe(policy, obs, target, layer, kind, controls, **probe_options)
    low = result.ci[0]
    passed = low >= min
    problems = [] if passed else [f"the CI lower bound {low:.4f} is below min={min}"]
    if min_selectivity is not None:
        if result.selectivity is None:
            raise rli.RliError("min_selectivity needs the controls: drop controls=False")
        if result.selectivity < min_selectivity:
            passed = False
            problems.append(f"selectivity {result.selectivity:+.4f} is below min_selectivity={min_selectivity}")
    summary = (f"probe {result.metric} of {result.target!r} at {_where(policy, layer)}: "
               f"{'; '.join(problems)}")
    evidence = _probe_evidence(result)
    if not passed:
        evidence += _profile_lines(policy, obs, target, layer, kind, **probe_options)
    finish("assert_probe_r2", f"assert_probe_r2[{result.layer}:{result.target}]", metric=result.metric,
            value=result.score, threshold=min, op="ci_low >=", higher_is_better=True, passed=passed, summary=summary,
            evidence=evidence, ci=result.ci, layer=result.layer, target=result.target, tolerance=tolerance,
            details={"controls": result.controls, "selectivity": result.selectivity, "n": result.n},
            anonymous=_anonymous(target))
    return result


def assert_probe_selective(*, policy: rli.Policy | None, obs: Any, layer: Any, target: Any,
                           min_selectivity: float = 0.1, kind: str = "ridge", tolerance: float | None = None,
                           alpha: float = 0.05, null: str | None = "structured", null_samples: int | None = None,
                           over: str | None = None, checkpoints: Any = None, step: int | str | None = None,
                           store: Any = None, **probe_options: Any) -> rli.ProbeResult | SeedVerdict:
    """The layer decodes ``target`` better than every control and than targets shaped like it.

    Passes only if (1) the lower end of the 95% CI of the selectivity (the layer's score minus
    the best control's, paired fold by fold, corrected resampled t; ``result.selectivity_ci``)
    is at least ``min_selectivity``, and (2) the structured-null p-value (the same probe on
    ``null_samples`` surrogate targets with the target's temporal / spatial structure,
    :mod:`rli.structured_null`) is at most ``alpha``. ``null=None`` skips (2), and the message
    says so. The controls are the same probe on the untrained network (the policy's own
    initialiser), on labels permuted between groups and on the raw observation.

    ``over="seeds"``: measured on one checkpoint per training seed and judged on the IQM over
    seeds (``checkpoints``, ``step``, ``store`` as in :func:`assert_probe_r2`): passes iff the
    lower end of the IQM's 95% CI of the selectivity (each seed's layer score minus its best
    control) is at least ``min_selectivity``.
    The structured null is not part of the seed-aware claim (each seed's selectivity is a point).
    """
    __tracebackhide__ = True
    if check_over(over, "assert_probe_selective"):
        from rli.runs.specs import Probe

        source, name = obs_spec("assert_probe_selective", obs, target, store)
        spec = Probe(obs=source, target=str(name), layer=layer, kind=kind, controls=True,
                     **_seed_options("assert_probe_selective", probe_options, ("folds", "seed")))
        return _over_seeds("assert_probe_selective", spec, "selectivity",
                           threshold=min_selectivity, checkpoints=checkpoints,
                           step=step, policy=policy, store=store, layer=layer, target=name,
                           what=f"selectivity of {name!r} at layer {layer!r}", tolerance=tolerance)
    policy = _need_policy("assert_probe_selective", policy)
    alpha = rli.stats.check_alpha(alpha)
    samples = check_null(null, null_samples, kind)["null_samples"]
    if null is not None and 1.0 / (1 + samples) > alpha:
        raise rli.RliError(f"null_samples={samples} cannot give a structured-null p-value ≤ alpha={alpha} (the "
                           f"smallest is 1/(1 + {samples})); use null_samples ≥ {int(np.ceil(1 / alpha)) - 1}")
    result = _probe(policy, obs, target, layer, kind, True, null=null, null_samples=null_samples, **probe_options)
    best = str(result.best_control)
    assert result.selectivity is not None and result.selectivity_ci is not None  # controls=True
    low, high = result.selectivity_ci
    interval_ok = low >= min_selectivity
    null_ok = result.null is None or result.null.p_value <= alpha
    passed = interval_ok and null_ok
    measured = (f"selectivity {result.selectivity:+.4f} vs the {CONTROL_LABELS[best]} control, 95% CI "
                f"[{low:+.4f}, {high:+.4f}] (paired over {result.folds} folds), "
                f"{'≥' if interval_ok else '<'} min_selectivity={min_selectivity}")
    if result.null is None:
        tested = "; structured null skipped (null=None): the decision rests on the controls alone"
    else:
        tested = (f"; structured null p = {result.null.p_value:.3g} {'≤' if null_ok else '>'} alpha={alpha} "
                  f"({result.null.samples} surrogates, {result.null.method})")
    summary = (f"probe of {result.target!r} at {_where(policy, layer)} is not shown to be selective: "
               f"{measured}{tested}")
    evidence = _probe_evidence(result)
    if result.null is not None:
        evidence.append(f"structured null: {result.null}")
    if not passed:
        evidence += _profile_lines(policy, obs, target, layer, kind, **probe_options)
    finish("assert_probe_selective", f"assert_probe_selective[{result.layer}:{result.target}]",
            metric="selectivity", value=float(result.selectivity), threshold=min_selectivity,
            op="selectivity CI low >=" + (f" (and structured-null p <= {alpha})" if null is not None else ""),
            higher_is_better=True, passed=passed, summary=summary, evidence=evidence, ci=list(result.selectivity_ci),
            layer=result.layer, target=result.target, tolerance=tolerance,
            details={"controls": result.controls, "r2": result.score, "ci": list(result.ci),
                     "selectivity_ci": list(result.selectivity_ci), "selectivity_p": result.selectivity_p,
                     "null": result.null.to_dict() if result.null is not None else None},
            anonymous=_anonymous(target))
    return result


# ------------------------------------------------------------------------------------ interventions
def _comparison_evidence(result: rli.Comparison) -> list[str]:
    rel_ci = result.relative_ci if result.relative_ci is not None else (float("nan"), float("nan"))
    return [f"intervention: {result.intervention}",
            f"return without: {result.baseline.mean:.4g} (IQM {result.stats.baseline_iqm:.4g}); with: "
            f"{result.treated.mean:.4g} (IQM {result.stats.treated_iqm:.4g})",
            f"relative drop: {result.relative_drop:+.2%}, 95% CI [{rel_ci[0]:+.2%}, {rel_ci[1]:+.2%}], paired t-test "
            f"p = {result.p_value:.3g}",
            f"paired episodes: {len(result.baseline.returns)} on {result.baseline.env}, seeds "
            f"{result.baseline.seeds[0]}..{result.baseline.seeds[-1]}"]


def _power_hint(result: rli.Comparison, effect: float) -> list[str]:
    """Health check: can this many episodes resolve an effect of this size at all?"""
    if result.relative_ci is None or effect <= 0:
        return []
    half = (result.relative_ci[1] - result.relative_ci[0]) / 2
    if half <= effect / 2:
        return []
    episodes = len(result.baseline.returns)
    needed = int(np.ceil(episodes * (half / (effect / 2)) ** 2))
    return [f"health check: with {episodes} episodes the CI half-width is {half:.2%}, too wide to resolve "
            f"{effect:.2%}; about {needed} episodes would be needed"]


def _relative_drop(result: rli.Comparison) -> float:
    if result.relative_drop is None:
        raise rli.RliError("the baseline mean return is 0, so a relative drop is undefined; "
                           "use an environment or seeds with non-zero return")
    return result.relative_drop


def assert_ablation_degrades(*, policy: rli.Policy | None, env: Any, obs: Any = None, layer: Any,
                             direction: Any = "pc1", min_drop: float = 0.05, episodes: int = defaults.EPISODES,
                             alpha: float = 0.0, seed: int = 0, tolerance: float | None = None,
                             over: str | None = None, checkpoints: Any = None, step: int | str | None = None,
                             store: Any = None, **evaluate_options: Any) -> rli.Comparison | SeedVerdict:
    """Removing ``direction`` at ``layer`` lowers return: the paired 95% t-interval of the drop excludes 0
    and the mean relative drop (a point estimate; its CI is in the message) is at least ``min_drop`` (0.05 = 5%).

    ``direction`` is ``"pcK"`` (principal directions of the layer on ``obs``), an array
    or a fitted probe; ``alpha`` scales instead of zeroing.

    ``over="seeds"``: measured on one checkpoint per training seed and judged on the IQM over
    seeds (``checkpoints``, ``step``, ``store`` as in :func:`assert_probe_r2`): passes iff the
    lower end of the IQM's 95% CI of the relative drop is at least ``min_drop``.
    Each seed's ``direction`` (``"pcK"``) is fitted on its own activations of ``obs``, and
    ``env`` must be a gymnasium id.
    """
    __tracebackhide__ = True
    if check_over(over, "assert_ablation_degrades"):
        from rli.runs.specs import Ablation

        if not isinstance(env, str) or not isinstance(direction, str):
            raise rli.RliError("assert_ablation_degrades: over='seeds' needs env as a gymnasium id and direction as "
                               f"'pcK' or 'pcI-J' (fitted on each seed), not env={env!r}, direction={direction!r}")
        source, _ = obs_spec("assert_ablation_degrades", obs, None, store)
        spec = Ablation(env=env, layer=layer, obs=source, direction=direction, alpha=alpha, episodes=episodes,
                        seed=seed, **_seed_options("assert_ablation_degrades", evaluate_options, ("max_steps",)))
        return _over_seeds("assert_ablation_degrades", spec, "relative_drop",
                           threshold=min_drop, checkpoints=checkpoints, step=step,
                           policy=policy, store=store, layer=layer, target=None,
                           what=f"relative drop in return with {direction} of layer {layer!r} removed",
                           tolerance=tolerance)
    policy = _need_policy("assert_ablation_degrades", policy)
    intervention = rli.ablate(policy, layer, direction, alpha=alpha, obs=obs)
    result = rli.compare(policy, env, intervention, episodes, seed, **evaluate_options)
    drop = _relative_drop(result)
    excludes_zero = result.ci[0] > 0
    passed = excludes_zero and drop >= min_drop
    problems = []
    if not excludes_zero:
        problems.append(f"the 95% CI of the drop [{result.ci[0]:.4g}, {result.ci[1]:.4g}] does not exclude 0")
    if drop < min_drop:
        problems.append(f"the relative drop {drop:+.2%} is below min_drop={min_drop:.2%}")
    evidence = _comparison_evidence(result) + ([] if passed else _power_hint(result, min_drop))
    finish("assert_ablation_degrades", f"assert_ablation_degrades[{result.treated.intervention}]",
            metric="relative_drop", value=drop, threshold=min_drop, op="ci excludes 0 and >=", higher_is_better=True,
            passed=passed, summary=f"ablation at {_where(policy, layer)} does not degrade return: {'; '.join(problems)}",
            evidence=evidence, ci=result.relative_ci, layer=policy.layer(layer).name, tolerance=tolerance,
            details={"p_value": result.p_value, "episodes": episodes, "seed": seed})
    return result


def _preserves(assertion: str, policy: rli.Policy, env: Any, intervention: Any, layer: Any, max_drop: float,
               episodes: int, seed: int, tolerance: float | None, evaluate_options: dict,
               significance: float) -> rli.Comparison:
    __tracebackhide__ = True
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float, np.integer, np.floating)) or \
            not 0 < max_drop < float("inf"):
        raise rli.RliError(f"{assertion}: max_drop is the equivalence margin, a positive fraction of the baseline "
                           f"return (0.05 = ±5%), got {max_drop!r}")
    rli.stats.check_alpha(significance)
    result = rli.compare(policy, env, intervention, episodes, seed, **evaluate_options)
    drop = _relative_drop(result)
    tost = result.equivalence(max_drop, alpha=significance)
    passed = tost.equivalent
    pct = round(float((1 - 2 * significance) * 100))
    low, high = tost.ci
    summary = (f"{intervention.describe()} is not shown to preserve return: the {pct}% CI of the relative drop "
               f"[{low:+.2%}, {high:+.2%}] is not inside ±max_drop = ±{max_drop:.2%} (TOST p = {tost.p_value:.3g})")
    evidence = [
        *_comparison_evidence(result),
        f"equivalence (TOST at {significance:g}, two-sided): {pct}% CI of the relative drop [{low:+.2%}, {high:+.2%}] "
        f"(Fieller, the baseline mean's noise included) vs ±{max_drop:.2%}; p(drop ≥ +{max_drop:.2%}) = "
        f"{tost.p_upper:.3g}, p(drop ≤ −{max_drop:.2%}) = {tost.p_lower:.3g}"]
    if not passed:
        evidence += _power_hint(result, max_drop)
    finish(assertion, f"{assertion}[{result.treated.intervention}]", metric="relative_drop", value=drop,
            threshold=max_drop, op="TOST: ci within ±", higher_is_better=False, passed=passed, summary=summary,
            evidence=evidence, ci=tost.ci, layer=policy.layer(layer).name, tolerance=tolerance,
            details={"p_value": result.p_value, "tost_p_value": tost.p_value, "episodes": episodes, "seed": seed,
                     "significance": significance})
    return result


def assert_ablation_preserves(*, policy: rli.Policy, env: Any, obs: Any = None, layer: Any, direction: Any,
                              max_drop: float = 0.05, episodes: int = defaults.EPISODES, alpha: float = 0.0, seed: int = 0,
                              significance: float = 0.05, tolerance: float | None = None,
                              **evaluate_options: Any) -> rli.Comparison:
    """Removing ``direction`` at ``layer`` leaves return unchanged within ±``max_drop``: an equivalence test.

    Two one-sided paired tests at level ``significance`` (TOST): the ``1 − 2·significance``
    CI of the relative drop (90% by default) must lie inside ``(−max_drop, +max_drop)``.
    Two-sided: a large gain fails it as a large loss does, and a CI too wide to
    tell (too few episodes) fails it too. ``alpha`` scales the direction instead of
    zeroing it.
    """
    __tracebackhide__ = True
    intervention = rli.ablate(policy, layer, direction, alpha=alpha, obs=obs)
    return _preserves("assert_ablation_preserves", policy, env, intervention, layer, max_drop, episodes, seed,
                      tolerance, evaluate_options, significance)


def assert_subspace_sufficient(*, policy: rli.Policy, env: Any, obs: Any, layer: Any, k: int, max_drop: float = 0.05,
                               episodes: int = defaults.EPISODES, seed: int = 0, significance: float = 0.05,
                               tolerance: float | None = None, **evaluate_options: Any) -> rli.Comparison:
    """Keeping only the top ``k`` principal directions of ``layer`` (on ``obs``; the rest set to its mean)
    leaves return unchanged within ±``max_drop``: TOST, the ``1 − 2·significance`` CI of the relative drop
    inside ±``max_drop`` (two-sided), as :func:`assert_ablation_preserves`."""
    __tracebackhide__ = True
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise rli.RliError(f"k must be an integer of at least 1 (principal directions kept), got {k!r}")
    keep = rli.keep_subspace(policy, layer, "pc1" if k == 1 else f"pc1-{k}", obs=obs)
    return _preserves("assert_subspace_sufficient", policy, env, keep, layer, max_drop, episodes, seed, tolerance,
                      evaluate_options, significance)


# ----------------------------------------------------------------------------------------- polarity
def assert_polarity_inversion(*, policy: rli.Policy | None, obs: Any, layer: Any, sensors: Any, target: Any,
                              min_drop: float = 0.5, require_flip: bool = False, tolerance: float | None = None,
                              over: str | None = None, checkpoints: Any = None, step: int | str | None = None,
                              store: Any = None, **probe_options: Any) -> Any:
    """Negating ``sensors`` collapses the probe: R²(normal) − R²(inverted) is at least ``min_drop`` and its 95%
    CI excludes 0 (and, with ``require_flip``, a probe refitted on inverted inputs is shown to read the target
    the other way: see :attr:`rli.PolarityResult.flipped`).

    ``over="seeds"``: measured on one checkpoint per training seed and judged on the IQM over
    seeds (``checkpoints``, ``step``, ``store`` as in :func:`assert_probe_r2`): passes iff the
    lower end of the IQM's 95% CI of the R² drop is at least ``min_drop``.
    """
    __tracebackhide__ = True
    if check_over(over, "assert_polarity_inversion"):
        from rli.runs.specs import Polarity

        if require_flip:
            raise rli.RliError("assert_polarity_inversion: require_flip is a per-checkpoint verdict; over='seeds' "
                               "judges the R² drop only: drop require_flip or measure one checkpoint")
        source, name = obs_spec("assert_polarity_inversion", obs, target, store)
        spec = Polarity(obs=source, target=str(name), sensors=tuple(int(i) for i in np.atleast_1d(sensors)),
                        layer=layer, **_seed_options("assert_polarity_inversion", probe_options, ("folds", "seed")))
        return _over_seeds("assert_polarity_inversion", spec, "drop",
                           threshold=min_drop, checkpoints=checkpoints, step=step,
                           policy=policy, store=store, layer=layer, target=name,
                           what=f"R² drop of {name!r} at layer {layer!r} with sensors {list(spec.sensors)} negated",
                           tolerance=tolerance)
    policy = _need_policy("assert_polarity_inversion", policy)
    result = _cached("polarity", policy, obs, target, lambda: rli.polarity_test(
        policy, obs, target, sensors, layer, **probe_options), layer=policy.layer(layer).name,
                     sensors=tuple(np.atleast_1d(sensors).tolist()), **probe_options)
    passed = result.drop >= min_drop and result.drop_ci[0] > 0 and (result.flipped or not require_flip)
    problems = []
    if result.drop < min_drop:
        problems.append(f"the R² drop {result.drop:+.4f} is below min_drop={min_drop}")
    if result.drop_ci[0] <= 0:
        problems.append(f"the 95% CI of the R² drop [{result.drop_ci[0]:+.4f}, {result.drop_ci[1]:+.4f}] includes 0")
    if require_flip and not result.flipped:
        problems.append(f"the refitted probe is not shown to read the target the other way (readout correlation "
                        f"{result.readout_correlation:+.3f}, 95% CI [{result.readout_ci[0]:+.3f}, "
                        f"{result.readout_ci[1]:+.3f}]: {result.reading})")
    evidence = [f"R² normal {result.r2_normal:.4f}, inverted {result.r2_inverted:.4f}, drop {result.drop:+.4f} "
                f"(95% CI [{result.drop_ci[0]:+.4f}, {result.drop_ci[1]:+.4f}])",
                f"refitted on inverted inputs: R² {result.r2_refit:.4f}, readout correlation "
                f"{result.readout_correlation:+.3f}, flipped: {result.flipped}",
                f"sensors negated: {list(result.sensors)}; n = {result.n}, {result.folds}-fold CV"]
    finish("assert_polarity_inversion", f"assert_polarity_inversion[{result.layer}:{result.target}]",
            metric="r2_drop", value=result.drop, threshold=min_drop, op=">=", higher_is_better=True, passed=passed,
            summary=f"polarity inversion at {_where(policy, layer)}: {'; '.join(problems)}", evidence=evidence,
            ci=result.drop_ci, layer=result.layer, target=result.target, tolerance=tolerance,
            details={"r2_normal": result.r2_normal, "r2_inverted": result.r2_inverted, "flipped": result.flipped},
            anonymous=_anonymous(target))
    return result


# --------------------------------------------------------------------------------------- similarity
def _cka_groups(obs: Any, groups: Any) -> Any:
    """The groups for CKA's resampling: ``groups`` (array or label name), else the ``episode`` label, else rows."""
    if groups is False:
        return None
    if isinstance(groups, str):
        if not isinstance(obs, rli.ObsSet):
            raise rli.RliError(f"groups={groups!r} names a label, but obs is a plain array without labels; pass "
                               "the group of each row as an array, or an ObsSet")
        return obs.label(groups)
    if groups is None:
        return obs.labels["episode"] if isinstance(obs, rli.ObsSet) and "episode" in obs.labels else None
    return groups


def assert_representation_similar(*, policy: rli.Policy | None, obs: Any, layer: Any, reference: Any,
                                  min_cka: float = 0.9, reference_layer: Any = None, tolerance: float | None = None,
                                  groups: Any = None, debiased: bool = True, alpha: float = 0.05, n_boot: int = 1000,
                                  n_permutations: int = 1000, seed: int = 0, over: str | None = None,
                                  checkpoints: Any = None, step: int | str | None = None,
                                  store: Any = None) -> rli.CKAResult | SeedVerdict:
    """``layer`` represents ``obs`` like the same layer (or ``reference_layer``) of ``reference``
    (a checkpoint path or policy): the lower end of the 95% CI of linear CKA (debiased by
    default) exceeds ``min_cka`` *and* the permutation p-value against unrelated
    representations is below ``alpha``. Catches drift between training runs.

    ``groups`` (array, label name, or ``False`` for independent rows) sets the resampling
    unit; by default the ``episode`` label of rollout-collected observations. Under two
    unrelated representations it passes in at most ~5% of draws, iid or episode-correlated
    (tests/test_calibration_cka.py).

    ``over="seeds"``: each training seed's ``layer`` against the same layer of ``reference`` (a
    checkpoint path), judged on the IQM over seeds of the debiased CKA (``checkpoints``,
    ``step``, ``store`` as in :func:`assert_probe_r2`): passes iff the lower end of its 95% CI
    is at least ``min_cka`` (the per-seed permutation p-values are in the records, not the rule).

    Example (inside a test):
        >>> assert_representation_similar(policy=policy, obs=obs, layer=5,  # doctest: +SKIP
        ...                               reference="ckpt_seed1.zip", min_cka=0.8)
    """
    __tracebackhide__ = True
    from rli import checks

    if check_over(over, "assert_representation_similar"):
        from rli.runs.specs import CKA

        if not isinstance(reference, (str, Path)) or reference_layer is not None or not debiased or \
                groups is not None:
            raise rli.RliError("assert_representation_similar: over='seeds' compares each seed's layer with the same "
                               "layer of reference, a checkpoint path, by debiased CKA over the observations' "
                               "episodes: drop reference_layer=, debiased=, groups= or measure one checkpoint")
        source, _ = obs_spec("assert_representation_similar", obs, None, store)
        spec = CKA(obs=source, layer=layer, reference=str(reference), n_boot=n_boot, n_permutations=n_permutations,
                   seed=seed)
        return _over_seeds("assert_representation_similar", spec, "cka",
                           threshold=checks.real(min_cka, "min_cka", minimum=-1.0, maximum=1.0),
                           checkpoints=checkpoints, step=step, policy=policy, store=store,
                           layer=layer, target=str(reference), what=f"CKA at layer {layer!r} with {reference}",
                           tolerance=tolerance)
    policy = _need_policy("assert_representation_similar", policy)

    alpha = checks.real(alpha, "alpha", minimum=1e-6, maximum=0.5)
    min_cka = checks.real(min_cka, "min_cka", minimum=-1.0, maximum=1.0)
    other = reference if isinstance(reference, rli.Policy) else rli.load_policy(reference)
    other_layer = layer if reference_layer is None else reference_layer
    group_labels = _cka_groups(obs, groups)
    ours = rli.capture(policy, obs, layers=[layer])[layer]
    theirs = rli.capture(other, obs, layers=[other_layer])[other_layer]
    result = rli.cka(ours, theirs, debiased=debiased, groups=group_labels, n_boot=n_boot,
                     n_permutations=n_permutations, seed=seed)
    value = result.value
    passed = result.ci[0] > min_cka and result.p_value < alpha
    problems = []
    if result.ci[0] <= min_cka:
        problems.append(f"the CI's lower end {result.ci[0]:.4f} is not above min_cka={min_cka}")
    if result.p_value >= alpha:
        problems.append(f"the permutation p-value {result.p_value:.4g} is not below alpha={alpha} "
                        f"(unrelated representations reach CKA {result.null_q95:.4f} one time in twenty)")
    unit = f"{result.n_groups} groups" if result.resampled == "groups" else f"{result.n} independent rows"
    evidence = [f"{'debiased' if result.debiased else 'biased'} linear CKA {value:.4f} (95% CI [{result.ci[0]:.4f}, "
                f"{result.ci[1]:.4f}], {result.interval} over {unit}) between {policy.layer(layer).name} of "
                f"{policy.source or 'the policy'} and {other.layer(other_layer).name} of "
                f"{other.source or 'the reference'} on {ours.shape[0]} observations",
                f"permutation null ({result.n_permutations} permutations of {result.resampled}): p = "
                f"{result.p_value:.4g}, 95th percentile {result.null_q95:.4f}",
                f"fingerprints: {policy.fingerprint[:12]} vs {other.fingerprint[:12]}"]
    finish("assert_representation_similar", f"assert_representation_similar[{policy.layer(layer).name}]",
            metric="cka", value=value, threshold=min_cka, op=">", higher_is_better=True, passed=passed,
            summary=f"representation at {_where(policy, layer)} not shown similar: {'; '.join(problems)}",
            evidence=evidence, ci=result.ci, layer=policy.layer(layer).name, tolerance=tolerance,
            details={"p_value": result.p_value, "null_q95": result.null_q95, "debiased": result.debiased,
                     "resampled": result.resampled, "n_groups": result.n_groups})
    return result
