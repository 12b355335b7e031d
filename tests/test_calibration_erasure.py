"""Calibration of the erasure report's decisions on rollout-like (autocorrelated, per-episode) data.

Data: per episode an AR(1) latent s (4 dims, ρ = 0.97, stationary start), activations
x = tanh(s A) + 0.02·noise (16 units). Null concepts: an N(0, 1) constant per episode, or an
independent AR(1) drift, both unrelated to x. A decision is "recovered" when the 95% CI of
the grouped-CV R² lies above 0; with R runs the false count must not exceed the 99th
percentile of Binomial(R, 0.05).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from rli.erasure import assess_erasure, grouped_r2


def rollouts(rng: np.random.Generator, episodes: int = 20, steps: int = 30, q: int = 4, d: int = 16,
             rho: float = 0.97) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.empty((episodes, steps, q))
    s[:, 0] = rng.normal(size=(episodes, q))
    for t in range(1, steps):
        s[:, t] = rho * s[:, t - 1] + np.sqrt(1 - rho**2) * rng.normal(size=(episodes, q))
    a = rng.normal(size=(q, d)) / np.sqrt(q)
    x = np.tanh(s.reshape(-1, q) @ a) + 0.02 * rng.normal(size=(episodes * steps, d))
    return x, s.reshape(-1, q), np.repeat(np.arange(episodes), steps)


def null_concept(rng: np.random.Generator, episodes: np.ndarray, kind: str) -> np.ndarray:
    if kind == "constant":
        return rng.normal(size=episodes.max() + 1)[episodes]
    drift = np.empty(len(episodes))
    for e in np.unique(episodes):
        rows = np.flatnonzero(episodes == e)
        drift[rows] = np.cumsum(rng.normal(size=rows.size)) / np.sqrt(rows.size)
    return drift


def _null_counts(runs: int, kind: str, nonlinear: bool) -> dict[str, int]:
    counts = {"in_sample": 0, "before": 0, "held_out": 0, "nonlinear": 0}
    for r in range(runs):
        rng = np.random.default_rng([17, r])
        x, _, episodes = rollouts(rng)
        report = assess_erasure(x, null_concept(rng, episodes, kind), episodes, seed=r, nonlinear=nonlinear)
        for name in ("in_sample", "before", "held_out"):
            counts[name] += getattr(report, name).recovered
        counts["nonlinear"] += bool(report.nonlinear is not None and report.nonlinear.recovered)
    return counts


@pytest.mark.parametrize("kind", ["constant", "drift"])
def test_unrelated_concepts_are_not_recovered_fast(kind):
    runs = 10
    counts = _null_counts(runs, kind, nonlinear=False)
    assert max(counts.values()) <= binom.ppf(0.99, runs, 0.05), counts


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["constant", "drift"])
def test_unrelated_concepts_are_not_recovered_thorough(kind):
    runs = 60
    counts = _null_counts(runs, kind, nonlinear=True)
    assert max(counts.values()) <= binom.ppf(0.99, runs, 0.05), counts


def _power(runs: int) -> tuple[int, int]:
    found_linear = found_nonlinear = 0
    for r in range(runs):
        x, s, episodes = rollouts(np.random.default_rng([18, r]))
        report = assess_erasure(x, s[:, 0] ** 2, episodes, seed=r)  # even in s: LEACE leaves it to an MLP
        found_nonlinear += report.nonlinear.recovered
        found_linear += grouped_r2(x, s[:, 0], episodes, seed=r).recovered
    return found_linear, found_nonlinear


def test_planted_signal_is_found_fast():
    x, s, episodes = rollouts(np.random.default_rng([18, 0]))
    assert grouped_r2(x, s[:, 0], episodes).recovered


@pytest.mark.slow
def test_planted_signal_is_found_thorough():
    runs = 20
    linear, nonlinear = _power(runs)
    assert linear >= 0.9 * runs and nonlinear >= 0.8 * runs, (linear, nonlinear)
