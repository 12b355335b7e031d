"""Selectivity with a CI and the structured null (issue #17): unit tests of rli.structured_null and ProbeResult."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn as nn
from scipy import stats as st

import rli
from pytest_rli.assertions import assert_probe_selective
from rli.probes import probe
from rli.structured_null import StructuredNull, check_null, for_probe, surrogates


def _ar1(rng: np.random.Generator, episodes: int, steps: int, rho: float, dims: int = 1) -> np.ndarray:
    z = np.empty((episodes, steps, dims))
    z[:, 0] = rng.normal(size=(episodes, dims))
    for t in range(1, steps):
        z[:, t] = rho * z[:, t - 1] + math.sqrt(1 - rho**2) * rng.normal(size=(episodes, dims))
    return z


def _acf(x: np.ndarray, lags: int) -> np.ndarray:
    x = x - x.mean()
    return np.array([np.dot(x[:-k], x[k:]) / np.dot(x, x) for k in range(1, lags + 1)])


def _lag_corr(f: np.ndarray, axis: int, lag: int) -> float:
    a, b = np.take(f, range(f.shape[axis] - lag), axis), np.take(f, range(lag, f.shape[axis]), axis)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2)))
    rng = np.random.default_rng(0)
    x = _ar1(rng, 10, 24, 0.9, 3).reshape(-1, 3).astype(np.float32)
    return policy, rli.ObsSet(x, {"episode": np.repeat(np.arange(10), 24)}), x


# ------------------------------------------------------------------------------------- surrogates
def test_episode_surrogates_keep_power_spectrum_variance_and_episode_means():
    rng = np.random.default_rng(1)
    episodes, steps = 6, 256
    z = _ar1(rng, episodes, steps, 0.9)[..., 0] + rng.normal(size=(episodes, 1)) * 2
    groups = np.repeat(np.arange(episodes), steps)
    s = surrogates(z.ravel(), groups=groups, samples=200, seed=0).reshape(200, episodes, steps)
    means = z.mean(axis=1)
    for draw in s[:20]:  # the episode means are permuted between episodes: the same multiset, exactly
        np.testing.assert_allclose(np.sort(draw.mean(axis=1)), np.sort(means), atol=1e-10)
        np.testing.assert_allclose(draw.std(axis=1), z.std(axis=1), rtol=1e-10)  # each episode's own variance
    for e in range(episodes):
        power = scipy.fft.dct(z[e] - z[e].mean(), norm="ortho") ** 2  # the DCT power spectrum: kept exactly
        for d in range(5):
            np.testing.assert_allclose(scipy.fft.dct(s[d, e] - s[d, e].mean(), norm="ortho") ** 2, power,
                                       rtol=1e-8, atol=1e-12 * power.max())
        mean_acf = np.mean([_acf(s[d, e], 5) for d in range(200)], axis=0)  # so is the autocorrelation, on average
        np.testing.assert_allclose(mean_acf, _acf(z[e], 5), atol=0.06)
    # and the surrogates are unrelated to the original sequence
    assert abs(np.corrcoef(s[:, 0].ravel(), np.tile(z[0], 200))[0, 1]) < 0.1


def test_grid_surrogates_keep_spatial_spectrum():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    field = gaussian_filter(rng.normal(size=(40, 60)), sigma=4, mode="reflect")
    s = surrogates(field.ravel(), grid_shape=(40, 60), samples=100, seed=3).reshape(100, 40, 60)
    np.testing.assert_allclose(s.mean(axis=(1, 2)), field.mean(), atol=1e-12)
    np.testing.assert_allclose(s.std(axis=(1, 2)), field.std(), rtol=1e-10)
    power = scipy.fft.dctn(field, norm="ortho") ** 2
    np.testing.assert_allclose(scipy.fft.dctn(s[0], norm="ortho") ** 2, power, rtol=1e-8, atol=1e-12 * power.max())
    for axis in (0, 1):  # lag-1 and lag-4 correlation along each axis (the smoothness), on average
        for lag in (1, 4):
            expected = _lag_corr(field, axis, lag)
            assert np.mean([_lag_corr(d, axis, lag) for d in s]) == pytest.approx(expected, abs=0.06)
    # unrelated to the field on average (a field this smooth has few modes, so single draws can correlate)
    assert abs(np.mean([np.corrcoef(d.ravel(), field.ravel())[0, 1] for d in s])) < 0.1


def test_class_surrogates_permute_runs_between_episodes():
    labels = np.repeat(np.array([0, 1, 2, 0, 1, 2]), 10)
    labels[5:10] = 3  # one episode with two runs
    groups = np.repeat(np.arange(6), 10)
    for draw in surrogates(labels, groups=groups, samples=20, seed=0, classes=True):
        episodes = [tuple(np.sort(draw[g * 10:(g + 1) * 10])) for g in range(6)]
        assert sorted(episodes) == sorted(tuple(np.sort(labels[g * 10:(g + 1) * 10])) for g in range(6))
        runs = [np.count_nonzero(np.diff(draw[g * 10:(g + 1) * 10])) for g in range(6)]
        assert max(runs) <= 2  # a circular shift of two runs has at most two changes


def test_surrogates_deterministic_under_a_seed():
    y = np.random.default_rng(0).normal(size=120)
    groups = np.repeat(np.arange(6), 20)
    a = surrogates(y, groups=groups, samples=4, seed=7)
    np.testing.assert_array_equal(a, surrogates(y, groups=groups, samples=4, seed=7))
    assert not np.allclose(a, surrogates(y, groups=groups, samples=4, seed=8))


@pytest.mark.parametrize("kwargs, match", [
    ({"groups": np.zeros(5)}, "one group id per row"),
    ({"groups": np.zeros(10)}, "single group"),
    ({"grid_shape": (3, 4)}, "does not hold"),
    ({"samples": 0}, "samples"),
    ({"seed": -1}, "seed"),
])
def test_surrogates_bad_arguments(kwargs, match):
    with pytest.raises(rli.RliError, match=match):
        surrogates(np.arange(10.0), **kwargs)


def test_surrogates_reject_non_finite_targets():
    with pytest.raises(rli.RliError, match="finite"):
        surrogates(np.array([1.0, np.nan, 2.0]))


@pytest.mark.parametrize("null, samples, match", [
    ("shuffle", None, "null must be None or 'structured'"),
    (None, 10, "null_samples is set but null is None"),
    ("structured", 0, "null_samples"),
    ("structured", 10**6, "null_samples"),
])
def test_check_null_bad_arguments(null, samples, match):
    with pytest.raises(rli.RliError, match=match):
        check_null(null, samples, "ridge")


def test_probe_null_bad_arguments_before_work(small):
    policy, obs, x = small
    with pytest.raises(rli.RliError, match="null must be"):
        probe(policy, obs, x[:, 0], layer=1, null="random")
    with pytest.raises(rli.RliError, match="cannot give a structured-null p-value"):
        assert_probe_selective(policy=policy, obs=obs, layer=1, target=x[:, 0], null_samples=5)


def test_structured_null_p_value_formula():
    null = StructuredNull.from_scores(0.5, [0.1, 0.5, 0.7, 0.2], "rows permuted")
    assert null.p_value == pytest.approx((1 + 2) / (1 + 4)) and null.samples == 4
    assert "p = 0.6" in str(null) and json.dumps(null.to_dict())


# ------------------------------------------------------------------------------ probes with the null
def test_ridge_null_scores_equal_probing_each_surrogate(small):
    """The vectorised ridge path (all surrogates on the same statistics) gives each surrogate's own probe score."""
    policy, obs, x = small
    y = np.sin(2 * x[:, 0]) + 0.3 * x[:, 1]
    result = probe(policy, obs, y, layer=1, controls=False, null="structured", null_samples=4, seed=3)
    parts, method = for_probe(obs, y[:, None], result_groups(obs), 4, 3, classes=False)
    assert method.startswith("per-group DCT phase randomisation")
    alone = [probe(policy, obs, part[:, 0], layer=1, controls=False, seed=3).r2 for part in parts]
    np.testing.assert_allclose(result.null.scores, alone, rtol=1e-8, atol=1e-10)
    assert result.null.score == pytest.approx(result.r2)
    rows = probe(policy, x, y, layer=1, controls=False, null="structured", null_samples=3, seed=1)  # GCV path
    parts, method = for_probe(x, y[:, None], None, 3, 1, classes=False)
    assert method == "rows permuted"
    np.testing.assert_allclose(rows.null.scores, [probe(policy, x, p[:, 0], layer=1, controls=False, seed=1).r2
                                                  for p in parts], rtol=1e-8, atol=1e-10)


def result_groups(obs: rli.ObsSet) -> np.ndarray:
    """The episode codes the probe's grouped split uses (episodes numbered in order of appearance)."""
    return np.unique(obs.labels["episode"], return_inverse=True)[1]


def test_lasso_null_scores_equal_probing_each_surrogate(small):
    policy, obs, x = small
    y = np.tanh(2 * x[:, 0])
    result = probe(policy, obs, y, layer=1, kind="lasso", alphas=0.05, controls=False, null="structured",
                   null_samples=2)
    parts, _ = for_probe(obs, y[:, None], result_groups(obs), 2, 0, classes=False)
    alone = [probe(policy, obs, p[:, 0], layer=1, kind="lasso", alphas=0.05, controls=False).r2 for p in parts]
    np.testing.assert_allclose(result.null.scores, alone, rtol=1e-10)


def test_selectivity_ci_matches_scipy_by_hand(small):
    policy, obs, x = small
    result = probe(policy, obs, np.tanh(3 * x[:, 0]), layer=1, control_seeds=2)
    best = result.best_control
    per_fold = np.asarray(result.control_fold_scores[best])
    assert per_fold.mean() == pytest.approx(result.controls[best], rel=1e-12)
    d = np.asarray(result.fold_scores) - per_fold
    k = len(d)
    se = d.std(ddof=1) * math.sqrt(1 / k + 1 / (k - 1))  # Nadeau–Bengio, n_test/n_train = 1/(K-1)
    half = st.t.ppf(0.975, k - 1) * se
    assert result.selectivity_ci == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-10)
    assert result.selectivity_p == pytest.approx(st.t.sf(d.mean() / se, k - 1), rel=1e-10)
    assert result.selectivity == pytest.approx(d.mean(), abs=1e-12)
    assert "selectivity" in str(result) and "paired over the folds" in str(result)


def test_result_shows_and_serialises_the_null(small):
    policy, obs, x = small
    result = probe(policy, obs, x[:, 0], layer=1, control_seeds=1, null="structured", null_samples=19)
    assert result.null.samples == 19 and len(result.null.scores) == 19
    assert result.null.p_value == pytest.approx((1 + sum(s >= result.r2 for s in result.null.scores)) / 20)
    text = str(result)
    assert "structured null" in text and "19 surrogates" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["null"]["p_value"] == result.null.p_value and len(data["selectivity_ci"]) == 2
    again = probe(policy, obs, x[:, 0], layer=1, controls=False, null="structured", null_samples=19)
    assert again.null == result.null  # deterministic under the seed


def test_logistic_null_runs_with_class_surrogates(small):
    policy, obs, x = small
    labels = (x[:, 0] > 0).astype(int)
    result = probe(policy, obs, labels, layer=1, kind="logistic", alphas=1.0, controls=False, null="structured",
                   null_samples=3)
    assert result.null.method.startswith("class sequences permuted between groups") and result.null.samples == 3


def test_interrupt_in_the_null_leaves_policy_untouched(small, monkeypatch):
    policy, obs, x = small
    before = [p.detach().clone() for p in policy.module.parameters()]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rli.probes.ridge_scores", interrupted)
    with pytest.raises(KeyboardInterrupt):
        probe(policy, obs, x[:, 0], layer=1, controls=False, null="structured", null_samples=3)
    assert all(torch.equal(a, b) for a, b in zip(before, policy.module.parameters()))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in policy.module.modules())
