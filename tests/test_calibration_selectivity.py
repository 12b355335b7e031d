"""Calibration of assert_probe_selective (selectivity CI + structured null) on correlated data (issue #17).

Null simulations: targets unrelated to the representation but shaped like real ones, (a) per-episode constant
or slowly drifting targets on AR(1) episodes, (b) random smooth fields over the formation probe grid (the
audit's case, which passed ``assert_probe_selective(min 0.1)`` every time with a point-difference
selectivity). A test fails when the false-pass count over R draws exceeds the 99th percentile of
Binomial(R, 0.05), a bound fixed in advance. Power: a target the layer encodes and its controls do not
(a sharp tanh unit planted in the first layer) is still found. Fast versions in the default run; the
thorough ones are ``@pytest.mark.slow`` (R ≥ 200).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats as st

import rli
from pytest_rli.assertions import assert_probe_selective
from rli.probes import probe

CHECKPOINT = Path(__file__).resolve().parents[1] / "examples" / "checkpoints" / "formation_ppo_seed42.zip"


def bound(runs: int) -> int:
    """The most false passes allowed in ``runs`` null draws: the 99th percentile of Binomial(runs, 0.05)."""
    return int(st.binom.ppf(0.99, runs, 0.05))


@pytest.fixture(scope="module")
def planted():
    """3 → 32 → 2 tanh network whose first hidden unit is tanh(8·x₀): it encodes a sharp step of x₀, which the
    smooth random features of an untrained copy (PyTorch's defaults) and the raw input decode only in part."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 2))
    with torch.no_grad():
        net[0].weight[0] = torch.tensor([8.0, 0.0, 0.0])
        net[0].bias[0] = 0.0
    return rli.load_policy(net)


def episodes(seed: int, count: int = 20, steps: int = 30, rho: float = 0.95) -> tuple[rli.ObsSet, np.ndarray]:
    """``count`` episodes × ``steps`` of a 3-d AR(1) latent (stationary N(0, 1)), observed directly."""
    rng = np.random.default_rng(seed)
    z = np.empty((count, steps, 3))
    z[:, 0] = rng.normal(size=(count, 3))
    for t in range(1, steps):
        z[:, t] = rho * z[:, t - 1] + math.sqrt(1 - rho**2) * rng.normal(size=(count, 3))
    x = z.reshape(-1, 3).astype(np.float32)
    return rli.ObsSet(x, {"episode": np.repeat(np.arange(count), steps)}), x


def null_target(kind: str, seed: int, count: int, steps: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 99])
    if kind == "constant":
        return np.repeat(rng.normal(size=count), steps)
    walk = np.cumsum(rng.normal(size=(count, steps)), axis=1) / math.sqrt(steps) + rng.normal(size=(count, 1))
    return walk.ravel()


def selective(policy: rli.Policy, obs: rli.ObsSet, target: tuple[str, np.ndarray], layer: int,
              min_selectivity: float, **options) -> bool:
    try:
        assert_probe_selective(policy=policy, obs=obs, layer=layer, target=target, min_selectivity=min_selectivity,
                               **options)
    except AssertionError:
        return False
    return True


FAST = {"control_seeds": 1, "null_samples": 19}


# ----------------------------------------------------------------------------- (a) AR(1) episodes
@pytest.mark.parametrize("kind", ["constant", "walk"])
def test_null_per_episode_targets_fast(planted, kind):
    runs = 2
    passes = 0
    for r in range(runs):
        obs, _ = episodes(r, 12, 20)
        passes += selective(planted, obs, (kind, null_target(kind, r, 12, 20)), 1, 0.0, seed=r, **FAST)
    assert passes <= bound(runs)


def test_power_planted_step_fast(planted):
    obs, x = episodes(7)
    y = np.tanh(8 * x[:, 0]) + 0.1 * np.random.default_rng(7).normal(size=len(x))
    assert selective(planted, obs, ("step", y), 1, 0.0, null_samples=19)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["constant", "walk"])
def test_null_per_episode_targets_slow(planted, kind):
    runs = 200
    passes = 0
    for r in range(runs):
        obs, _ = episodes(1000 + r)
        passes += selective(planted, obs, (kind, null_target(kind, r, 20, 30)), 1, 0.0, seed=r)
    assert passes <= bound(runs)


@pytest.mark.slow
def test_power_planted_step_slow(planted):
    runs = 40
    found = 0
    for r in range(runs):
        obs, x = episodes(2000 + r)
        y = np.tanh(8 * x[:, 0]) + 0.1 * np.random.default_rng(r).normal(size=len(x))
        found += selective(planted, obs, ("step", y), 1, 0.0, seed=r)
    assert found >= 0.8 * runs


@pytest.mark.slow
def test_structured_null_p_values_uniform_under_the_null(planted):
    """Per-episode-constant null targets: p-values (99 surrogates) close to uniform (KS) and P(p ≤ 0.05) in bound."""
    runs = 200
    p = []
    for r in range(runs):
        obs, _ = episodes(3000 + r, 16, 25)
        result = probe(planted, obs, null_target("constant", r, 16, 25), layer=1, controls=False,
                       null="structured", seed=r)
        p.append(result.null.p_value)
    p = np.asarray(p)
    assert st.kstest(p, "uniform").pvalue > 0.01
    assert np.sum(p <= 0.05) <= bound(runs)


# ------------------------------------------------------------------ (b) smooth fields over the grid
@pytest.fixture(scope="module")
def formation():
    return rli.load_policy(str(CHECKPOINT))


def reference_grid(n_x: int = 80, n_y: int = 120) -> rli.ObsSet:
    from rli.envs import probe_grid

    return probe_grid(n_x, n_y, nominal="reference")


def smooth_field(shape: tuple[int, ...], seed: int, sigma: float = 8.0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma=sigma, mode="reflect")
    return (field - field.mean()).ravel() / field.std()


def test_null_smooth_fields_over_the_grid_fast(formation):
    """The audit's case on a coarser grid (24 × 36 points, fields of the same relative smoothness): a random smooth
    field unrelated to the wake is no longer called selective at min 0.1."""
    grid = reference_grid(24, 36)
    runs = 2
    passes = sum(selective(formation, grid, ("smooth", smooth_field((24, 36), r, sigma=2.4)), 5, 0.1, seed=r,
                           **FAST) for r in range(runs))
    assert passes <= bound(runs)


@pytest.mark.slow
def test_null_smooth_fields_over_the_grid_slow(formation):
    """The full reference grid (80 × 120, 9,600 points), Gaussian-smoothed white noise (σ = 8 grid steps)."""
    grid = reference_grid()
    shape = tuple(grid.meta["grid_shape"])
    runs = 200
    passes = sum(selective(formation, grid, ("smooth", smooth_field(shape, 100 + r)), 5, 0.1, seed=r)
                 for r in range(runs))
    assert passes <= bound(runs)


@pytest.mark.slow
def test_power_planted_readout_over_the_grid_slow(formation):
    """Power on the grid: a random linear readout of layer 5 itself plus 0.3 SD white noise (encoded by
    construction) is found (min_selectivity 0) in ≥ 80% of draws."""
    from rli.capture import capture

    grid = reference_grid()
    name = formation.layer(5).name
    acts = capture(formation, grid.obs, [name])[name]
    runs = 20
    found = 0
    for r in range(runs):
        rng = np.random.default_rng(r)
        y = acts @ rng.normal(size=acts.shape[1])
        y = (y - y.mean()) / y.std() + 0.3 * rng.normal(size=len(y))
        found += selective(formation, grid, ("readout", y), 5, 0.0, seed=r)
    assert found >= 0.8 * runs
