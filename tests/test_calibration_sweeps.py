"""Calibration of the multiplicity and equivalence rules: ablation curves, minimal subspaces, layer profiles.

Every decision rule gets a null simulation on correlated data like real rollouts and a
power check. Episode returns are simulated as the sum of rewards along an AR(1) latent
(phi = 0.95, 100 steps per episode): the return of seed i is a smooth function of a
slowly drifting state, the treated arm of the same seed starts from the same state and
shares most of its innovations (corr 0.7) with the untreated one, and the arms of one
curve share part of theirs with each other. Probe fold scores come from ridge probes
(scikit-learn, grouped by episode) on per-episode AR(1) trajectories. False-positive
counts are tested against the 99th percentile of Binomial(R, 0.05), fixed in advance.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats as st
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

import rli
from rli.rollout import EvalResult
from rli.stats import paired_comparison
from rli.sweeps import AblationCurve, select_and_confirm

STEPS, PHI, SHARED = 100, 0.95, 0.7


def _fp_bound(runs: int) -> int:
    """Largest false-positive count consistent with a 5% rate: the 99th percentile of Binomial(runs, 0.05)."""
    return int(st.binom.ppf(0.99, runs, 0.05))


def _returns(rng: np.random.Generator, runs: int, episodes: int, arms: int) -> np.ndarray:
    """(runs, arms + 1, episodes) returns; arm 0 is the baseline; every arm has the same law of returns."""
    start = rng.normal(size=(runs, 1, episodes))
    base = rng.normal(size=(runs, 1, episodes, STEPS))
    common = rng.normal(size=(runs, 1, episodes, STEPS))  # shared by the treated arms of one curve
    own = rng.normal(size=(runs, arms, episodes, STEPS))
    treated = SHARED * base + np.sqrt(1 - SHARED**2) * (np.sqrt(0.5) * common + np.sqrt(0.5) * own)
    innov = np.concatenate([base, treated], axis=1)
    x = np.repeat(start, arms + 1, axis=1)
    total = np.zeros(x.shape)
    for t in range(STEPS):
        x = PHI * x + np.sqrt(1 - PHI**2) * innov[..., t]
        total += 1.0 - 0.5 * np.tanh(x) ** 2
    return total


def _eval(returns: np.ndarray, first_seed: int = 0, what: str | None = None) -> EvalResult:
    n = len(returns)
    return EvalResult(returns=np.asarray(returns, float), lengths=np.full(n, STEPS), seeds=np.arange(first_seed,
                      first_seed + n), env="sim/AR1-v0", intervention=what)


def _paired(b: np.ndarray, t: np.ndarray) -> rli.stats.PairedComparison:
    """rli's paired comparison with rli's own t-test and t-interval, skipping the (reported-only) bootstrap."""
    t_stat, p = rli.stats.paired_ttest(b, t)
    ci = rli.stats.t_interval(b - t)
    m = abs(b.mean())
    return rli.stats.PairedComparison(
        n=b.size, baseline_mean=float(b.mean()), treated_mean=float(t.mean()), drop=float((b - t).mean()),
        relative_drop=float((b - t).mean()) / m, ci=ci, relative_ci=(ci[0] / m, ci[1] / m), bootstrap_ci=ci,
        p_value=p, t_statistic=t_stat, effect_size=0.0, baseline_iqm=0.0, treated_iqm=0.0, confidence=0.95)


def _curve(sample: np.ndarray, scale: np.ndarray, correction: str) -> AblationCurve:
    """An AblationCurve over the simulated arms (treated arm j multiplied by scale[j]) via rli's own types."""
    baseline = _eval(sample[0])
    comparisons = tuple(rli.Comparison(baseline=baseline, treated=_eval(s * arm, what=f"arm {j}"),
                                       stats=_paired(sample[0], s * arm))
                        for j, (arm, s) in enumerate(zip(sample[1:], scale)))
    return AblationCurve(layer="sim", parameter="k", values=tuple(range(1, len(scale) + 1)),
                         comparisons=comparisons, correction=correction)


def _curve_rates(runs: int, scale: tuple[float, ...], seed: int) -> dict[str, int]:
    data = _returns(np.random.default_rng(seed), runs, 10, len(scale))
    counts = {"holm": 0, "bonferroni": 0, "none": 0}
    for sample in data:
        curve = _curve(sample, np.array(scale), "holm")
        for correction in counts:
            counts[correction] += any(dataclasses.replace(curve, correction=correction).significant)
    return counts


# ------------------------------------------------------------------------------------ reference checks
def test_holm_is_the_step_down_procedure():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 8))
        adjusted = rli.stats.holm(p)
        for alpha in (0.01, 0.05, 0.1):  # reference: reject in order while p_(i) <= alpha / (m - i)
            reject = np.zeros(p.size, bool)
            for rank, i in enumerate(np.argsort(p, kind="stable")):
                if p[i] > alpha / (p.size - rank):
                    break
                reject[i] = True
            np.testing.assert_array_equal(adjusted <= alpha, reject)
    np.testing.assert_allclose(rli.stats.bonferroni([0.01, 0.2]), [0.02, 0.4])
    with pytest.raises(rli.RliError, match="correction"):
        rli.stats.adjust([0.1], "fdr")


def test_tost_is_two_one_sided_scipy_tests_and_its_interval_decides():
    rng = np.random.default_rng(1)
    for _ in range(100):
        b = rng.normal(100, 15, 12)
        t = b * rng.uniform(0.9, 1.1) + rng.normal(0, 4, 12)
        result = rli.stats.tost(b, t, 0.05)
        d = b - t
        assert result.p_upper == pytest.approx(st.ttest_1samp(d - 0.05 * b, 0, alternative="less").pvalue, rel=1e-9)
        assert result.p_lower == pytest.approx(st.ttest_1samp(d + 0.05 * b, 0, alternative="greater").pvalue,
                                               rel=1e-9)
        inside = -0.05 < result.ci[0] and result.ci[1] < 0.05
        assert result.equivalent == inside
        assert result.ci[0] <= result.relative_drop <= result.ci[1]


def test_a_large_loss_or_gain_is_never_within_tolerance():
    base = np.linspace(400.0, 500.0, 10)
    assert not rli.stats.tost(base, 0.13 * base, 0.05).equivalent  # the audit's −87% "within tolerance"
    assert not rli.stats.tost(base, 1.3 * base, 0.05).equivalent  # two-sided: a +30% change is no "preserves"
    assert rli.stats.tost(base, base, 0.05).equivalent
    c = rli.Comparison(baseline=_eval(base), treated=_eval(0.13 * base), stats=paired_comparison(base, 0.13 * base))
    assert not c.equivalence(0.05).equivalent and "paired" in rli.Comparison.__doc__
    assert "bootstrap interval" not in (rli.Comparison.ci.__doc__ or "")


# ----------------------------------------------------------------------------------- ablation curves
def _curve_null(runs: int) -> None:
    counts = _curve_rates(runs, (1.0,) * 5, seed=0)
    bound = _fp_bound(runs)
    assert counts["holm"] <= bound, f"Holm: a significant point in {counts['holm']}/{runs} null curves (> {bound})"
    assert counts["bonferroni"] <= bound
    # the uncorrected rule the curve used before fails this same check
    assert counts["none"] > bound, f"uncorrected: {counts['none']}/{runs}"


def test_ablation_curve_family_wise_error_under_the_global_null_fast():
    _curve_null(200)


@pytest.mark.slow
def test_ablation_curve_family_wise_error_under_the_global_null_thorough():
    _curve_null(2000)


def test_ablation_curve_finds_a_planted_drop():
    runs = 60  # a 15% drop at k = 5 (about 6 standard errors with 10 episodes), none at k = 1..4
    counts = _curve_rates(runs, (1.0, 1.0, 1.0, 1.0, 0.85), seed=7)
    assert counts["holm"] >= 0.9 * runs, f"planted drops found in {counts['holm']}/{runs}"


def test_ablation_curve_states_its_correction():
    sample = _returns(np.random.default_rng(3), 1, 10, 3)[0]
    curve = _curve(sample, np.array([1.0, 1.0, 0.5]), "holm")
    assert curve.significant[2] and curve.adjusted_p_values[2] >= curve.p_values[2]
    assert "holm correction over 3 points" in str(curve)
    assert curve.to_dict()["correction"] == "holm"


# --------------------------------------------------------------------------------- minimal subspace
def _subspace_rates(runs: int, loss: float, good: int | None, seed: int, episodes: int = 10) -> tuple[int, int]:
    """(select-then-confirm "found", the old rule's "found") over ``runs`` simulated searches of 5 candidates.

    Every candidate loses ``loss`` of return, except ``good`` (which loses nothing); the old rule stopped at the
    first step whose mean relative drop on the same seeds was ≤ tolerance and called that sufficient.
    """
    rng = np.random.default_rng(seed)
    found = old = 0
    for _ in range(runs):
        pools = {}

        def trial(kept, phase, pools=pools):
            key = (kept, phase)
            if phase not in pools:  # one set of seeds per phase: baseline + an arm per subspace tried
                pools[phase] = list(_returns(rng, 1, episodes, 40)[0])
                pools[phase + "_base"] = pools[phase].pop(0)
            if key not in pools:
                pools[key] = pools[phase].pop()
            factor = 1.0 if good in kept else 1.0 - loss
            return pools[phase + "_base"], factor * pools[key]

        result = select_and_confirm(trial, 5, tolerance=0.05, method="greedy")
        found += result.found
        old += any((np.mean(b - t) / abs(np.mean(b))) <= 0.05 for b, t in
                   (trial(kept, "selection") for kept in result.path))
    return found, old


def _subspace_null(runs: int) -> None:
    found, old = _subspace_rates(runs, 0.08, None, seed=0)
    bound = _fp_bound(runs)
    assert found <= bound, f"'sufficient' in {found}/{runs} searches where every candidate loses 8% (> {bound})"
    assert old > bound, f"the old point-estimate rule: {old}/{runs}"


def test_minimal_subspace_false_sufficient_rate_at_a_true_8pct_loss_fast():
    _subspace_null(40)


@pytest.mark.slow
def test_minimal_subspace_false_sufficient_rate_at_a_true_8pct_loss_thorough():
    _subspace_null(1000)


def test_minimal_subspace_finds_a_planted_sufficient_direction():
    runs = 40  # 40 + 40 episodes: the 90% CI of a 0% change is about ±2% wide, so ±5% can be shown
    found, _ = _subspace_rates(runs, 0.3, 3, seed=11, episodes=40)
    assert found >= 0.8 * runs, f"the one preserving direction confirmed in {found}/{runs} (power < 80%)"


def test_a_gain_beyond_tolerance_is_not_sufficient():
    base = np.linspace(90.0, 110.0, 12)
    result = select_and_confirm(lambda kept, phase: (base, 1.3 * base), 3, tolerance=0.05)
    assert not result.found and result.confirmation is None


# ------------------------------------------------------------------------------------ layer profiles
def _episodes(rng: np.random.Generator, episodes: int = 20, steps: int = 30) -> tuple[np.ndarray, np.ndarray]:
    z = np.empty((episodes, steps))
    z[:, 0] = rng.normal(size=episodes)
    for t in range(1, steps):
        z[:, t] = PHI * z[:, t - 1] + np.sqrt(1 - PHI**2) * rng.normal(size=episodes)
    return z.ravel(), np.repeat(np.arange(episodes), steps)


def _fold_scores(features: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[float, ...]:
    scores = []
    for train, test in GroupKFold(5).split(features, y, groups):
        fit = Ridge(alpha=1.0).fit(features[train], y[train])
        scores.append(1 - np.mean((fit.predict(features[test]) - y[test]) ** 2) / np.var(y[test]))
    return tuple(scores)


def _profiles(runs: int, noises: tuple[float, ...], seed: int, template: rli.ProbeResult) -> list[rli.LayerProfile]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(runs):
        z, groups = _episodes(rng)
        y = np.sin(z) + 0.3 * rng.normal(size=z.size)
        results = []
        for noise in noises:  # a "layer": smooth features of the latent plus its own noise
            feats = np.stack([np.tanh(z * w) for w in (0.5, 1.0, 2.0)], 1) + noise * rng.normal(size=(z.size, 3))
            scores = _fold_scores(feats, y, groups)
            results.append(dataclasses.replace(template, fold_scores=scores, score=float(np.mean(scores))))
        out.append(rli.LayerProfile(results=tuple(results)))
    return out


@pytest.fixture(scope="module")
def template() -> rli.ProbeResult:
    x = np.random.default_rng(0).normal(size=(60, 3))
    import torch.nn as nn

    return rli.probe(rli.load_policy(nn.Sequential(nn.Linear(3, 3))), x, x[:, 0], 0, controls=False)


def _profile_null(runs: int, template: rli.ProbeResult) -> None:
    profiles = _profiles(runs, (0.5, 0.5, 0.5), seed=0, template=template)
    labelled = sum(any(label != "≈" for label in p.routing) for p in profiles)
    excluded = sum(p.results[0] not in p.best_set for p in profiles)
    bound = _fp_bound(runs)
    assert labelled <= bound, f"a routing label on equally informative layers in {labelled}/{runs} (> {bound})"
    assert excluded <= bound, f"an equally good layer left out of the best set in {excluded}/{runs} (> {bound})"


def test_layer_profile_routing_and_best_set_under_the_null_fast(template):
    _profile_null(60, template)


@pytest.mark.slow
def test_layer_profile_routing_and_best_set_under_the_null_thorough(template):
    _profile_null(1000, template)


def test_layer_profile_finds_a_planted_gain(template):
    profiles = _profiles(30, (2.0, 0.1), seed=5, template=template)
    gained = sum(p.routing[0] in ("beneficial", "neutral") for p in profiles)
    ruled_out = sum(p.results[0] not in p.best_set for p in profiles)
    assert gained >= 27 and ruled_out >= 27, (gained, ruled_out)
    assert "≈" in str(profiles[0]) or "significant" in str(profiles[0])
