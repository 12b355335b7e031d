"""Ridge probes on awkward designs agree with scikit-learn: constant, near-constant, duplicated, badly scaled,
one-hot and wider-than-tall features (primal and dual forms)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import rli
from rli.moments import RELATIVE_GRID, KernelMoments, Moments, accumulate, fold_order

GRID = tuple(10.0 ** np.arange(-2, 4))


def identity_policy(d: int) -> rli.Policy:
    """A one-layer policy whose layer 0 is the observation itself (float32)."""
    layer = nn.Linear(d, d)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(d))
        layer.bias.zero_()
    return rli.load_policy(nn.Sequential(layer))


def sklearn_model(alpha: float | tuple[float, ...], standardize: bool):
    """scikit-learn's reference: ``[StandardScaler] + Ridge(alpha)`` or, for a grid, ``+ RidgeCV(alphas=grid)``."""
    model = RidgeCV(alphas=alpha) if isinstance(alpha, tuple) else Ridge(alpha)
    return make_pipeline(StandardScaler(), model) if standardize else model


def fold_r2(model, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(y[test], model.fit(x[train], y[train]).predict(x[test])))


def gcv(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...], standardize: bool) -> np.ndarray:
    """Generalised cross-validation of ridge with an intercept on (x, y), from the hat matrix: independent of rli.

    ``GCV(α) = RSS(α) / (1 − (tr H(α) + 1)/n)²`` (Golub, Heath & Wahba 1979; the + 1 is the intercept), with the
    features centred (and scaled by scikit-learn's StandardScaler when ``standardize``).
    """
    z = StandardScaler(with_std=standardize).fit_transform(x)
    yc = y - y.mean()
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    out = []
    for alpha in alphas:
        shrink = s**2 / (s**2 + alpha)
        fitted = u @ (shrink * (u.T @ yc))
        dof = shrink.sum() + 1.0
        out.append(np.sum((yc - fitted) ** 2) / (1 - dof / len(y)) ** 2 if dof < len(y) else np.inf)
    return np.asarray(out)


# ------------------------------------------------------------------------- the reported design
def pixel_and_sensor_design(n: int = 2000, d: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A black pixel that fires on one row and a sensor that fires on two, beside informative features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 0] = 0.0
    x[7, 0] = 255.0
    x[:, 1] = 0.0
    x[[3, 900], 1] = 1.0
    return x, x[:, 2:5].astype(np.float64).sum(axis=1) + 0.1 * rng.normal(size=n)


def test_a_feature_constant_in_a_training_fold_gets_no_weight_and_the_score_of_scikit_learn():
    """Was: fold R² -14 (standardised probe) and a raw-observation control of -2.0, where scikit-learn gets 0.996.

    In the training set of the fold that holds row 7, the pixel is exactly 0; the old statistics (one pass,
    shifted by the first chunk's mean) left it a rounding-error variance of 1.8e-16, so it was scaled by 1/1.3e-8
    and row 7 (255) was predicted ~1e9 off.
    """
    x, y = pixel_and_sensor_design()
    result = rli.probe(identity_policy(10), x, y, 0, standardize=True, alphas=GRID, controls=True, control_seeds=1)
    xs = x.astype(np.float64)
    for f, (train, test) in enumerate(KFold(5, shuffle=True, random_state=0).split(xs)):
        expected = fold_r2(sklearn_model(result.fold_alphas[f], True), xs, y, train, test)
        assert result.fold_scores[f] == pytest.approx(expected, abs=1e-9)
        assert fold_r2(sklearn_model(GRID, True), xs, y, train, test) > 0.99  # scikit-learn's own alpha choice
    assert min(result.fold_scores) > 0.99
    assert result.controls["raw_obs"] > 0.99  # the raw-observation control is the same standardised ridge


# -------------------------------------------------------------------------------- the property
@st.composite
def designs(draw) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Random designs mixing the column kinds that break naive standardisation, with a target on informative ones.

    Returns x (float32, as activations are), y, the split seed and whether to standardise. Near-constant columns
    deviate on 1-2 rows; the 1e±8 scalings appear only when standardising: unstandardised ridge on them is
    ill-conditioned beyond float64 (Gram eigenvalues 1e16 apart), so no solver's answer is determined there.
    """
    seed = draw(st.integers(0, 2**16))
    standardize = draw(st.booleans())
    rng = np.random.default_rng(seed)
    n = draw(st.integers(30, 120))
    informative = draw(st.integers(1, 4))
    kinds = draw(st.lists(st.sampled_from(["constant", "near-constant", "duplicate", "one-hot", "large", "small",
                                           "noise"]), min_size=1, max_size=8))
    wide = draw(st.booleans())  # d > n: the dual form
    base = rng.normal(size=(n, informative))
    columns = [base]
    for kind in kinds:
        offset = float(rng.choice([0.0, rng.normal() * 10]))
        if kind == "constant":
            columns.append(np.full((n, 1), offset))
        elif kind == "near-constant":
            col = np.full((n, 1), offset)
            col[rng.choice(n, size=int(rng.integers(1, 3)), replace=False), 0] += rng.choice([1.0, 255.0])
            columns.append(col)
        elif kind == "duplicate":
            columns.append(base[:, [int(rng.integers(informative))]])
        elif kind == "one-hot":
            columns.append(np.eye(3)[rng.integers(0, 3, size=n)])
        elif kind in ("large", "small"):
            scale = (1e8 if kind == "large" else 1e-8) if standardize else (1e2 if kind == "large" else 1e-2)
            columns.append(scale * rng.normal(size=(n, 1)) + scale * offset)
        else:
            columns.append(rng.normal(size=(n, 1)))
    if wide:
        columns.append(rng.normal(size=(n, n + 5 - sum(c.shape[1] for c in columns) % 7)))
    x = np.hstack(columns).astype(np.float32)
    y = base.sum(axis=1) + 0.5 * rng.normal(size=n)
    return x, y, seed, standardize


@settings(max_examples=40, deadline=None)
@given(design=designs())
def test_fold_scores_agree_with_scikit_learn_on_awkward_designs(design):
    """Each fold's R² equals scikit-learn's pipeline at the fold's penalty, and that penalty minimises GCV.

    Tolerance 1e-6 on R²: both solve the same float64 ridge problem (rli by eigendecomposition of the Gram or
    kernel matrix, scikit-learn by Cholesky/SVD), so the fitted values differ by about κ·ε relative, κ =
    (λmax + α)/α ≤ n·d/0.01 ≈ 1e6 here (standardised columns have variance 1; unstandardised ones ≤ 1e4):
    1e-10 of the target's scale, four orders under the tolerance, and twelve under the errors this test
    caught (-1e6..-1e11). The penalty choice is rli's GCV; scikit-learn's RidgeCV uses exact leave-one-out
    instead, which picks other penalties near high-leverage rows (the near-constant columns make them: on one
    30×35 design RidgeCV's choice scores above -1 on a fold where GCV's scores -3.0, both exactly as scikit-learn's
    Ridge at that penalty), so the choice is checked against GCV computed from the hat matrix here.
    """
    x, y, seed, standardize = design
    _, d = x.shape
    result = rli.probe(identity_policy(d), x, y, 0, alphas=GRID, standardize=standardize, controls=False, seed=seed,
                       chunk_size=int(np.random.default_rng(seed).integers(7, 60)))
    xs = x.astype(np.float64)
    for f, (train, test) in enumerate(KFold(5, shuffle=True, random_state=seed).split(xs)):
        alpha = result.fold_alphas[f]
        expected = fold_r2(sklearn_model(alpha, standardize), xs, y, train, test)
        assert result.fold_scores[f] == pytest.approx(expected, abs=1e-6)
        assert result.fold_scores[f] >= -1 or expected < -1  # never absurd where scikit-learn is not
        criterion = gcv(xs[train], y[train], GRID, standardize)
        assert criterion[GRID.index(alpha)] <= criterion.min() * (1 + 1e-6)
    model = sklearn_model(result.alpha, standardize).fit(xs, y)
    np.testing.assert_allclose(xs @ result.coef + result.intercept, model.predict(xs), atol=1e-6 * np.abs(y).max())


# ------------------------------------------------------------------------- primal and dual forms
def _both_forms(x: np.ndarray, y: np.ndarray, folds: int = 5) -> tuple[Moments, KernelMoments, np.ndarray]:
    ids = np.arange(len(x)) % folds
    primal, dual = Moments(folds), KernelMoments(folds)
    for start in range(0, len(x), 23):  # streamed in uneven chunks
        rows = slice(start, start + 23)
        accumulate([(primal, x[rows], y[rows]), (dual, x[rows], y[rows])], *fold_order(ids[rows], folds))
    return primal, dual, ids


@pytest.mark.parametrize("d", [50, 59, 60, 61, 75])
@pytest.mark.parametrize("standardize", [False, True])
def test_primal_and_dual_forms_agree_near_d_equal_n(d: int, standardize: bool):
    """Same spectrum, same GCV choice, same weights and held-out R² (to 1e-8) whichever side is solved."""
    rng = np.random.default_rng(d)
    x = rng.normal(size=(60, d)) * rng.uniform(0.5, 3, size=d) + rng.normal(size=d)
    x[:, 3] = 2.5  # a constant feature
    y = np.c_[x[:, :2].sum(axis=1) + 0.3 * rng.normal(size=60), rng.normal(size=60)]
    primal, dual = _both_forms(x, y)[:2]
    for f in [*range(5), None]:
        p, q = primal.fit(f, standardize), dual.fit(f, standardize)
        for cols in (slice(0, 1), slice(1, 2), slice(0, 2)):
            grid = p.base * RELATIVE_GRID
            assert q.base == pytest.approx(p.base, rel=1e-12)
            # The two eigenproblems give each small eigenvalue to ε·λmax absolute, and GCV's sensitivity to them
            # grows as (λ̄/α)² (λ̄ = base, the mean eigenvalue): measured 4.5e-16·(λ̄/α)² at worst on these
            # designs (4.5e-4 at α = 1e-6·λ̄, 5e-13 from α = λ̄), so that, twice over, plus a floor of 1e-8 (the
            # standardised scales, computed from different sums, shift a whole curve by up to 6e-10).
            rtol = 1e-8 + 1e-15 * (p.base / grid) ** 2
            assert np.all(np.abs(q.gcv(grid, cols) / p.gcv(grid, cols) - 1) <= rtol)
            # near-ties at the smallest penalties (interpolating fits, d ≥ n) may resolve either way: same criterion
            assert p.gcv(grid, cols).min() == pytest.approx(p.gcv([q.choose(None, cols)], cols)[0], rel=rtol[0])
            alpha = p.choose(None, cols)
            (wp, cp), (wq, cq) = p.coef(alpha, cols), q.coef(alpha, cols)
            np.testing.assert_allclose(x @ wp + cp, x @ wq + cq, atol=1e-8)
            if f is not None:
                np.testing.assert_allclose(primal.r2(f, wp, cp, cols), dual.r2(f, wq, cq, cols), atol=1e-8)


def test_a_wide_probe_uses_the_dual_form_and_matches_scikit_learn():
    """d = 300 features from 120 rows: no 300×300 Gram, the scikit-learn answer."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 300)).astype(np.float32)
    x[:, :40] = 0.0  # black border pixels
    x[11, 5] = 9.0
    y = x[:, 50:60].astype(np.float64).sum(axis=1) + 0.2 * rng.normal(size=120)
    for standardize in (False, True):
        result = rli.probe(identity_policy(300), x, y, 0, standardize=standardize, controls=False)
        xs = x.astype(np.float64)
        for f, (train, test) in enumerate(KFold(5, shuffle=True, random_state=0).split(xs)):
            expected = fold_r2(sklearn_model(result.fold_alphas[f], standardize), xs, y, train, test)
            assert result.fold_scores[f] == pytest.approx(expected, abs=1e-8)
        model = sklearn_model(result.alpha, standardize).fit(xs, y)
        np.testing.assert_allclose(xs @ result.coef + result.intercept, model.predict(xs), atol=1e-8)


def test_the_wide_raw_observation_control_is_the_standardised_dual_probe():
    """An image-like observation (d = 432 > n = 200) keeps its raw-pixel control, equal to scikit-learn's."""
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(),
                                           nn.Linear(4 * 5 * 5, 8), nn.Tanh()), obs_shape=(3, 12, 12))
    rng = np.random.default_rng(1)
    obs = np.floor(rng.uniform(0, 256, size=(200, 3, 12, 12))).astype(np.float32)
    obs[:, :, 0, :] = 0.0  # a black row
    y = obs[:, 0, 3:6, 3:6].mean(axis=(1, 2)) / 255
    result = rli.probe(policy, obs, y, 4, control_seeds=1, alphas=GRID)
    xs = obs.reshape(200, -1).astype(np.float64)
    expected = [fold_r2(sklearn_model(GRID, True), xs, y, tr, te)
                for tr, te in KFold(5, shuffle=True, random_state=0).split(xs)]
    raw = result.control_runs["raw_obs"][0]
    # rli picks each fold's penalty by GCV and RidgeCV by leave-one-out: the same within the grid's resolution here
    assert raw == pytest.approx(np.mean(expected), abs=0.02) and raw > 0.3


def test_the_dual_form_checks_memory_before_the_work(monkeypatch: pytest.MonkeyPatch):
    real = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda name: 10 if name == "SC_PHYS_PAGES" else real(name))
    x = np.zeros((50, 300), dtype=np.float32)
    with pytest.raises(rli.RliError, match="ridge statistics of this probe would take"):
        rli.probe(identity_policy(300), x, np.arange(50.0), 0, controls=False)
