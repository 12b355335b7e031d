"""Calibration of debiased CKA and assert_representation_similar's rule on correlated data.

Rule: similar iff the 95% CI's lower end exceeds ``min_cka`` and the permutation p < 0.05.
Null: two unrelated representations (iid rows; episodes of AR(1)-drifting latents; latents with a
per-episode constant plus drift), tested at ``min_cka = 0`` (the most lenient threshold). The pass
count over R draws must not exceed the 99th percentile of Binomial(R, 0.05). Power: a rotated and
noised copy (population CKA 1/(1+σ²) = 0.5) passes at ``min_cka = 0.2``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import rli


def _episodes(rng: np.random.Generator, episodes: int, steps: int, width: int, *, constant: bool = False,
              rho: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """A smooth function of a 3-d AR(1) latent per episode (optionally around a per-episode constant)."""
    z = np.zeros((episodes, steps, 3))
    z[:, 0] = rng.normal(size=(episodes, 3))
    for t in range(1, steps):
        z[:, t] = rho * z[:, t - 1] + np.sqrt(1 - rho**2) * rng.normal(size=(episodes, 3))
    if constant:
        z = 0.3 * z + rng.normal(size=(episodes, 1, 3))
    return np.tanh(z.reshape(-1, 3) @ rng.normal(size=(3, width))), np.repeat(np.arange(episodes), steps)


def _passes(result: rli.CKAResult, min_cka: float) -> bool:
    return result.ci[0] > min_cka and result.p_value < 0.05


def _null_pair(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if kind == "iid":
        return rng.normal(size=(100, 256)), rng.normal(size=(100, 256)), None
    a, groups = _episodes(rng, 10, 30, 16, constant=kind == "constant")
    b, _ = _episodes(rng, 10, 30, 16, constant=kind == "constant")
    return a, b, groups


def _false_passes(kind: str, runs: int) -> int:
    count = 0
    for r in range(runs):
        a, b, groups = _null_pair(kind, np.random.default_rng([17, r]))
        count += _passes(rli.cka(a, b, groups=groups, n_boot=200, n_permutations=199, seed=r), 0.0)
    return count


def _power(runs: int) -> int:
    hits = 0
    for r in range(runs):
        rng = np.random.default_rng([23, r])
        a, groups = _episodes(rng, 10, 30, 16)
        rotation = np.linalg.qr(rng.normal(size=(16, 16)))[0]
        b = a @ rotation + rng.normal(size=a.shape) * a.std()
        hits += _passes(rli.cka(a, b, groups=groups, n_boot=200, n_permutations=199, seed=r), 0.2)
    return hits


@pytest.mark.parametrize("kind", ["iid", "drifting", "constant"])
def test_unrelated_representations_rarely_pass(kind):
    runs = 10
    assert _false_passes(kind, runs) <= stats.binom.ppf(0.99, runs, 0.05)


def test_rows_treated_as_independent_would_pass_unrelated_episodes():
    """Why groups matter: the same drifting episodes, resampled by row, pass far above 5%."""
    passes = 0
    for r in range(3):
        a, b, _ = _null_pair("drifting", np.random.default_rng([17, r]))
        passes += _passes(rli.cka(a, b, n_boot=200, n_permutations=199, seed=r), 0.0)
    assert passes >= 3


def test_a_rotated_noisy_copy_passes():
    runs = 4
    assert _power(runs) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["iid", "drifting", "constant"])
def test_unrelated_representations_rarely_pass_thoroughly(kind):
    runs = 200
    assert _false_passes(kind, runs) <= stats.binom.ppf(0.99, runs, 0.05)


@pytest.mark.slow
def test_a_rotated_noisy_copy_passes_thoroughly():
    runs = 100
    assert _power(runs) >= 90


@pytest.mark.slow
def test_ci_covers_the_population_cka():
    """iid a ~ N(0, I_16), b = aR + ε: population CKA 1/(1+1) = 0.5; coverage ≥ 90% over 200 draws."""
    covered = 0
    for r in range(200):
        rng = np.random.default_rng([29, r])
        a = rng.normal(size=(200, 16))
        b = a @ np.linalg.qr(rng.normal(size=(16, 16)))[0] + rng.normal(size=a.shape)
        result = rli.cka(a, b, n_boot=500, n_permutations=19, seed=r)
        covered += result.ci[0] <= 0.5 <= result.ci[1]
    assert covered >= 180
