"""Calibration of the rules about estimated directions and polarity, on correlated data like real rollouts.

* ``PolarityResult.flipped`` (issue 17, item 7): decided on intervals (both probes'
  held-out R² CIs above 0, the readout-correlation CI below 0), not on the sign of a
  point estimate. Null: a target unrelated to the observations (per-episode constant, or
  a random walk per episode), observations a smooth function of an AR(1) latent per
  episode. The old rule (``readout_correlation < 0``) called 44-85% of these "flipped".
* :func:`rli.compare_refit` (item 5): the interval of an ablation along an estimated
  principal direction must cover the drop of the population's PC1. In the simulation the
  fixed-direction t-interval covers it in 13-30% of draws.

Every rate is tested against an untuned binomial bound: with R runs, a false-positive
count above the 99th percentile of Binomial(R, 0.05) fails; a coverage count below the
1st percentile of Binomial(R, 0.90) fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats as st

import rli
from rli.direction_uncertainty import refit_interval


# ------------------------------------------------------------------------------------ polarity
def _rollouts(rng: np.random.Generator, episodes: int, steps: int, width: int = 6,
              rho: float = 0.98) -> tuple[np.ndarray, np.ndarray]:
    """Observations of ``episodes`` slowly drifting episodes (AR(1) latent, smooth nonlinear readout), episode ids."""
    z = np.empty((episodes, steps, width))
    z[:, 0] = rng.normal(size=(episodes, width))
    for t in range(1, steps):
        z[:, t] = rho * z[:, t - 1] + np.sqrt(1 - rho**2) * rng.normal(size=(episodes, width))
    obs = np.tanh(z @ rng.normal(size=(width, width)) / np.sqrt(width)) + 0.05 * rng.normal(size=z.shape)
    return obs.reshape(-1, width).astype(np.float32), np.repeat(np.arange(episodes), steps)


def _net_policy() -> rli.Policy:
    torch.manual_seed(0)
    return rli.load_policy(nn.Sequential(nn.Linear(6, 32), nn.Tanh()))


def _null_target(rng: np.random.Generator, kind: str, episodes: int, steps: int) -> np.ndarray:
    if kind == "episode_constant":
        return np.repeat(rng.normal(size=episodes), steps)
    return np.cumsum(rng.normal(size=(episodes, steps)), axis=1).ravel() / np.sqrt(steps)  # random walk per episode


def _flip_counts(runs: int, sensors: list[int], kind: str, episodes: int = 10,
                 steps: int = 100) -> tuple[int, int]:
    """(new rule, old rule) "flipped" counts over ``runs`` null draws."""
    policy = _net_policy()
    new = old = 0
    for r in range(runs):
        rng = np.random.default_rng([17, r])
        x, episode = _rollouts(rng, episodes, steps)
        y = _null_target(rng, kind, episodes, steps)
        obs = rli.ObsSet(x, labels={"episode": episode, "y": y})
        result = rli.polarity_test(policy, obs, "y", sensors=sensors, layer=1, seed=r)
        new += result.flipped
        old += result.readout_correlation < 0
    return new, old


def _fp_bound(runs: int) -> int:
    return int(st.binom.ppf(0.99, runs, 0.05))


@pytest.mark.parametrize("sensors", [[0, 1, 2], pytest.param([0, 1, 2, 3, 4, 5], marks=pytest.mark.slow)])
def test_flipped_null_false_positive_rate_fast(sensors):
    """40 null draws per sensor set (10 episodes × 100 steps; bound: 6): the interval rule calls 0/40 flipped in
    both; the old point rule, readout correlation < 0, called 19/40 and 40/40 flipped."""
    runs = 40
    new, old = _flip_counts(runs, sensors, "episode_constant")
    assert new <= _fp_bound(runs), (new, old)
    assert old > _fp_bound(runs), "the null is too easy: the old point rule should fail it"


def test_flipped_is_found_when_the_layer_reads_the_sensor():
    """Power: the target is the negated sensor itself (correlated rollouts): flipped in every one of 5 draws."""
    policy = _net_policy()
    for r in range(5):
        x, episode = _rollouts(np.random.default_rng([18, r]), 10, 100)
        obs = rli.ObsSet(x, labels={"episode": episode})
        result = rli.polarity_test(policy, obs, x[:, 0], sensors=[0], layer=1, seed=r)
        assert result.flipped and result.reading == "opposite", result
        assert result.readout_ci[1] < 0 < result.r2_normal_ci[0] and result.r2_refit_ci[0] > 0


def test_an_unread_sensor_reads_the_same_way():
    """Negating an input the network ignores leaves the activations unchanged: reading 'same', never flipped."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 32), nn.Tanh())
    with torch.no_grad():
        net[0].weight[:, 5] = 0.0
    policy = rli.load_policy(net)
    x, episode = _rollouts(np.random.default_rng(3), 10, 100)
    result = rli.polarity_test(policy, rli.ObsSet(x, labels={"episode": episode}), x[:, 0], sensors=[5], layer=1)
    assert not result.flipped and result.reading == "same" and result.readout_ci[0] > 0.99
    assert "not flipped: the CI lies above 0" in str(result) and result.to_dict()["reading"] == "same"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["episode_constant", "random_walk"])
@pytest.mark.parametrize("sensors", [[0], [0, 1, 2], [0, 1, 2, 3, 4, 5]])
@pytest.mark.parametrize("episodes", [5, 20])
def test_flipped_null_false_positive_rate_thorough(kind, sensors, episodes):
    runs = 200
    new, _ = _flip_counts(runs, sensors, kind, episodes=episodes, steps=1000 // episodes)
    assert new <= _fp_bound(runs), new


# ------------------------------------------------------------------------ estimated directions
# States: AR(1) per episode (rho 0.95) with stationary covariance diag(LAM); the policy's action reads W·s; the
# reward is 1 - (action error)², so zeroing a unit direction u costs sum_t (u·s_t)² (W·u)² per episode, in
# expectation T (u'Σu)(W·u)². PC1 of Σ is e1; W is tilted towards e2, so the cost depends on the PC1 estimate.
LAM = np.array([1.0, 0.6, 0.3, 0.2])
W = np.array([0.3, 1.0, 0.0, 0.0])
RHO = 0.95


def _states(rng: np.random.Generator, episodes: int, steps: int) -> np.ndarray:
    s = np.empty((episodes, steps, len(LAM)))
    s[:, 0] = rng.normal(size=(episodes, len(LAM))) * np.sqrt(LAM)
    noise = rng.normal(size=(episodes, steps, len(LAM))) * np.sqrt(LAM * (1 - RHO**2))
    for t in range(1, steps):
        s[:, t] = RHO * s[:, t - 1] + noise[:, t]
    return s


def _pc1(rows: np.ndarray) -> np.ndarray:
    basis, _ = rli.fit_pca(rows, 1)
    return basis[:, 0]


def _episode_drops(u: np.ndarray, states: np.ndarray) -> np.ndarray:
    return ((states @ u) ** 2).sum(axis=1) * (W @ u) ** 2


def _coverage(runs: int, fit_episodes: int, steps: int, eval_episodes: int = 10,
              refits: int = 20) -> tuple[int, int]:
    """(refit interval, fixed-direction t-interval): how often each covers the population PC1's expected drop."""
    truth = steps * LAM[0] * W[0] ** 2
    refit_hits = fixed_hits = 0
    for r in range(runs):
        rng = np.random.default_rng([5, r])
        fit, evaluation = _states(rng, fit_episodes, steps), _states(rng, eval_episodes, steps)
        low, high = rli.stats.t_interval(_episode_drops(_pc1(fit.reshape(-1, len(LAM))), evaluation))
        fixed_hits += low <= truth <= high
        drops = np.array([_episode_drops(_pc1(fit[rng.integers(0, fit_episodes, fit_episodes)].reshape(-1, len(LAM))),
                                         evaluation) for _ in range(refits)])
        _, (low, high), _ = refit_interval(drops, groups=fit_episodes)
        refit_hits += low <= truth <= high
    return refit_hits, fixed_hits


def _coverage_bound(runs: int) -> int:
    return int(st.binom.ppf(0.01, runs, 0.90))


def test_refit_interval_covers_the_population_direction_fast():
    """100 draws, 10 fitting episodes × 200 steps, 20 refits, 10 evaluation seeds: the refit interval covers the
    population PC1's drop at a rate the binomial check does not put below 90% (measured 89/100 here; 450-453/500
    in the thorough runs); the fixed-direction CI covers it 19/100."""
    runs = 100
    refit_hits, fixed_hits = _coverage(runs, 10, 200)
    assert refit_hits >= _coverage_bound(runs), refit_hits
    assert fixed_hits < _coverage_bound(runs), "the fixed-direction interval should fail this check"


@pytest.mark.slow
@pytest.mark.parametrize("fit_episodes,steps", [(5, 200), (10, 200), (20, 100)])
def test_refit_interval_covers_the_population_direction_thorough(fit_episodes, steps):
    runs = 500
    refit_hits, _ = _coverage(runs, fit_episodes, steps)
    assert refit_hits >= _coverage_bound(runs), refit_hits


def test_refit_interval_without_direction_noise_is_the_paired_t_interval_widened_by_nothing():
    """Identical refits (no direction noise): the interval is the paired t-interval over the seeds."""
    seeds = np.random.default_rng(0).normal(5.0, 2.0, size=12)
    mean, ci, df = refit_interval(np.tile(seeds, (4, 1)))
    assert mean == pytest.approx(seeds.mean()) and df == pytest.approx(11)
    assert ci == pytest.approx(rli.stats.t_interval(seeds))


def test_compare_refit_reproduces_each_refit_and_the_fixed_direction():
    """End to end on CartPole: the fixed comparison equals rli.compare, and every refit's drops equal rli.evaluate
    of rli.ablate fitted on the recorded bootstrap rows (whole episodes)."""
    torch.manual_seed(1)
    policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
    visited = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=300, seed=100)
    build = lambda o: rli.ablate(policy, 1, "pc1", obs=o)  # noqa: E731
    result = rli.compare_refit(policy, "CartPole-v1", build, visited, episodes=4, seed=0, refits=3)
    plain = rli.compare(policy, "CartPole-v1", build(visited), 4, 0)
    assert result.fixed.drop == plain.drop and result.fixed.ci == plain.ci
    episodes = visited.labels["episode"]
    baseline = rli.evaluate(policy, "CartPole-v1", 4, 0).returns
    for r, rows in enumerate(result.fit_rows):
        sizes = np.bincount(episodes)
        assert (np.bincount(episodes[rows], minlength=len(sizes)) % sizes == 0).all()  # whole episodes only
        treated = rli.evaluate(policy, "CartPole-v1", 4, 0, build(visited[rows])).returns
        np.testing.assert_array_equal(result.drops[r], baseline - treated)
    assert result.groups == len(np.unique(episodes)) and "bootstrap over" in result.resample
    assert "one fixed direction" in str(result) and "direction estimation and episode noise" in str(result)
    assert result.to_dict()["refits"] == 3


def test_compare_refit_bad_arguments():
    torch.manual_seed(1)
    policy = rli.load_policy(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), env="CartPole-v1")
    visited = rli.ObsSet.from_rollouts("CartPole-v1", policy, n=60, seed=100)
    build = lambda o: rli.ablate(policy, 1, "pc1", obs=o)  # noqa: E731
    cases = [
        (dict(build=None), "build="),
        (dict(refits=1), "refits"),
        (dict(groups="nope"), "groups='nope'"),
        (dict(groups=np.zeros(3)), "one group id per observation"),
        (dict(groups=np.zeros(len(visited))), "at least 2"),
        (dict(obs=None), "obs="),
        (dict(confidence=1.5), "confidence"),
    ]
    for change, message in cases:
        kwargs = {**dict(build=build, obs=visited, episodes=3, seed=0, refits=2), **change}
        with pytest.raises(rli.RliError, match=message):
            rli.compare_refit(policy, "CartPole-v1", **kwargs)
    with pytest.raises(rli.RliError, match="2-D"):
        refit_interval(np.zeros(5))
