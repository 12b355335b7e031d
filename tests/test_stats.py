"""rli.stats: intervals, paired tests, effect sizes — checked against scipy and by simulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

import rli
from rli import stats


def test_t_interval_is_scipys_t_interval():
    values = np.array([0.3, 0.5, 0.2, 0.9, 0.4, 0.6])
    expected = sps.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sps.sem(values))
    assert stats.t_interval(values) == pytest.approx(expected, rel=1e-12)


def test_cv_interval_applies_the_nadeau_bengio_correction():
    scores = np.array([0.81, 0.85, 0.79, 0.88, 0.83])
    k = len(scores)
    plain = stats.t_interval(scores)
    corrected = stats.cv_interval(scores)
    half_plain, half_corrected = (plain[1] - plain[0]) / 2, (corrected[1] - corrected[0]) / 2
    assert half_corrected / half_plain == pytest.approx(math.sqrt((1 / k + 1 / (k - 1)) / (1 / k)))
    assert np.mean(corrected) == pytest.approx(scores.mean())
    assert stats.cv_interval(scores, test_train_ratio=0.0) == pytest.approx(plain)


def test_cv_interval_of_identical_scores_is_a_point():
    assert stats.cv_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_bootstrap_ci_is_seeded_and_covers_the_mean_in_simulation():
    assert stats.bootstrap_ci(np.arange(30.0), seed=3) == stats.bootstrap_ci(np.arange(30.0), seed=3)
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(100):
        low, high = stats.bootstrap_ci(rng.exponential(size=40), n_resamples=999, seed=int(rng.integers(1 << 30)))
        covered += low <= 1.0 <= high
    assert covered >= 88


def test_bootstrap_ci_of_a_constant_sample_is_a_point():
    assert stats.bootstrap_ci([2.0, 2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_paired_ttest_is_scipys_ttest_rel():
    a, b = np.array([5.1, 4.9, 6.2, 5.8, 6.0]), np.array([4.8, 4.9, 5.5, 5.9, 5.2])
    res = sps.ttest_rel(a, b)
    assert stats.paired_ttest(a, b) == pytest.approx((res.statistic, res.pvalue))


def test_paired_ttest_degenerate_differences():
    assert stats.paired_ttest([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == (0.0, 1.0)
    t, p = stats.paired_ttest([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert t == math.inf and p == 0.0


def test_cohens_d_is_mean_over_sd_of_differences():
    a, b = np.array([3.0, 5.0, 4.0, 6.0]), np.array([1.0, 2.0, 2.0, 3.0])
    diff = a - b
    assert stats.cohens_d(a, b) == pytest.approx(diff.mean() / diff.std(ddof=1))
    assert stats.cohens_d(diff) == pytest.approx(stats.cohens_d(a, b))


def test_iqm_ignores_the_outer_quartiles():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 1000.0])
    assert stats.iqm(values) == pytest.approx(np.mean([3.0, 4.0, 5.0, 6.0]))


def test_paired_comparison_of_a_clear_drop():
    rng = np.random.default_rng(1)
    base = rng.normal(100.0, 5.0, size=30)
    treated = base - rng.normal(10.0, 2.0, size=30)
    cmp = stats.paired_comparison(base, treated, seed=0)
    assert cmp.drop == pytest.approx(np.mean(base - treated))
    assert cmp.relative_drop == pytest.approx(cmp.drop / base.mean())
    assert cmp.ci[0] < cmp.drop < cmp.ci[1] and cmp.ci[0] > 0
    assert cmp.relative_ci[0] < cmp.relative_drop < cmp.relative_ci[1]
    assert cmp.p_value < 1e-6 and cmp.effect_size > 2
    assert cmp.baseline_iqm == pytest.approx(stats.iqm(base))
    json.dumps(cmp.to_dict())
    assert "drop" in str(cmp) and "p =" in str(cmp)


def test_paired_comparison_without_effect_covers_zero_in_most_seeds():
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        base = rng.normal(50.0, 5.0, size=20)
        cmp = stats.paired_comparison(base, base + rng.normal(0.0, 3.0, size=20), n_resamples=999, seed=seed)
        covered += cmp.ci[0] <= 0 <= cmp.ci[1]
    assert covered >= 34


def test_paired_comparison_relative_drop_is_none_for_a_zero_baseline():
    cmp = stats.paired_comparison([1.0, -1.0, 2.0, -2.0], [0.0, -2.0, 1.0, -3.0])
    assert cmp.relative_drop is None and cmp.relative_ci is None


@pytest.mark.parametrize(("call", "message"), [
    (lambda: stats.paired_comparison([1.0, 2.0, 3.0], [1.0, 2.0]), "same length"),
    (lambda: stats.paired_ttest([1.0, float("nan")], [1.0, 2.0]), "NaN"),
    (lambda: stats.t_interval([1.0]), "at least 2"),
    (lambda: stats.t_interval([[1.0, 2.0]]), "one-dimensional"),
    (lambda: stats.bootstrap_ci([1.0, 2.0], confidence=95), "between 0 and 1"),
    (lambda: stats.iqm("abc"), "numbers"),
])
def test_bad_input_raises_rli_error(call, message):
    with pytest.raises(rli.RliError, match=message):
        call()


samples = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=5, max_size=30)


@settings(max_examples=25, deadline=None)
@given(samples, st.floats(-1e3, 1e3), st.integers(0, 2**16))
def test_paired_comparison_is_translation_invariant(base, shift, seed):
    base = np.asarray(base)
    treated = base - np.random.default_rng(seed).normal(1.0, 1.0, base.size)
    a = stats.paired_comparison(base, treated, n_resamples=199, seed=seed)
    b = stats.paired_comparison(base + shift, treated + shift, n_resamples=199, seed=seed)
    assert b.drop == pytest.approx(a.drop, abs=1e-9)
    assert b.p_value == pytest.approx(a.p_value, abs=1e-9)
    # Same resamples, but BCa's bias correction counts resampled means equal to the observed one
    # (permutations of the sample), and rounding decides those ties: allow a few % of the width.
    assert b.ci == pytest.approx(a.ci, abs=0.05 * (a.ci[1] - a.ci[0]) + 1e-9)


@settings(max_examples=25, deadline=None)
@given(samples, st.floats(1e-3, 1e3))
def test_intervals_are_scale_equivariant(values, scale):
    values = np.asarray(values)
    for interval in (stats.t_interval, stats.cv_interval):
        low, high = interval(values)
        assert interval(values * scale) == pytest.approx((low * scale, high * scale), rel=1e-9, abs=1e-9)
