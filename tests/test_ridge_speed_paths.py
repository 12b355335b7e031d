"""The probe engine's fast paths give scikit-learn's answers.

* Ridge: float32 activations (converted to float64 chunk by chunk, :class:`rli.moments.Moments`);
  held-out R² must equal scikit-learn's float64 pipeline to 1e-6 on the designs where float32
  activations are weakest: saturated Tanh units, nearly collinear units, a large common offset.
  (float32 Gram products were measured and not kept: benchmarks/README.md, bench_probe.)
* Logistic: the penalty search runs along warm-started paths with Newton-Cholesky steps
  (:class:`rli.logistic_path.LogisticPath`); the chosen C and every held-out accuracy must be those of
  ``GridSearchCV(LogisticRegression())`` (lbfgs, fully converged) on the same folds, on correlated
  (episode) data, including label-shuffled targets, where lbfgs took up to 2,000 iterations a fit.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import rli
from rli.logistic_path import LogisticPath
from rli.probes import fold_split, group_folds, probe
from tests.test_ridge_designs import identity_policy


# ------------------------------------------------------------------------------------------ ridge
def ill_conditioned(kind: str, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """float32 features where float32 arithmetic loses most, and a target on them."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, 6))
    if kind == "saturated tanh":  # units pinned near ±1, information in the last few float32 digits of 1 − |x|
        x = np.tanh(np.column_stack([4 + 0.5 * z[:, :3], -4 - 0.5 * z[:, 3:], z[:, :2]]))
    elif kind == "nearly collinear":  # pairs of units equal up to 1e-3
        x = np.column_stack([z, z[:, :4] + 1e-3 * rng.normal(size=(n, 4))])
    else:  # "offset": a common mean 1000× the spread
        x = 1000.0 + z
    x = x.astype(np.float32)
    y = x.astype(np.float64) @ rng.normal(size=x.shape[1]) * 10.0 + 0.1 * rng.normal(size=n)
    if kind == "saturated tanh":
        y = np.arctanh(np.clip(x[:, 0].astype(np.float64), -1 + 1e-7, 1 - 1e-7)) + 0.1 * rng.normal(size=n)
    return x, y


@pytest.mark.parametrize("standardize", [False, True], ids=["plain", "standardised"])
@pytest.mark.parametrize("kind", ["saturated tanh", "nearly collinear", "offset"])
def test_float32_activations_give_scikit_learns_r2_when_ill_conditioned(kind: str, standardize: bool):
    x, y = ill_conditioned(kind)
    alphas = (1e-3, 1.0)
    result = rli.probe(identity_policy(x.shape[1]), x, y, 0, alphas=alphas, standardize=standardize, controls=False)
    xs = x.astype(np.float64)
    for f, (train, test) in enumerate(KFold(5, shuffle=True, random_state=0).split(xs)):
        model = Ridge(result.fold_alphas[f])
        model = make_pipeline(StandardScaler(), model) if standardize else model
        expected = model.fit(xs[train], y[train]).score(xs[test], y[test])
        assert result.fold_scores[f] == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------------------- logistic
def episodes(shuffled: bool, n_episodes: int = 40, length: int = 8) -> tuple[rli.ObsSet, np.ndarray, rli.Policy]:
    """A slowly drifting state along episodes; the class is its heading (4 classes), or the heading of another
    episode (labels shuffled between episodes: no signal, the case lbfgs took 2,000 iterations on)."""
    rng = np.random.default_rng(3)
    state = np.cumsum(rng.normal(scale=0.3, size=(n_episodes, length, 6)), axis=1).reshape(-1, 6)
    labels = (np.floor(np.arctan2(state[:, 1], state[:, 0]) / (np.pi / 2)) % 4).astype(int)
    episode = np.repeat(np.arange(n_episodes), length)
    if shuffled:
        labels = labels.reshape(n_episodes, length)[rng.permutation(n_episodes)].ravel()
    torch.manual_seed(0)
    policy = rli.load_policy(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2)))
    obs = rli.ObsSet(state.astype(np.float32), labels={"episode": episode, "heading": labels})
    return obs, labels, policy


@pytest.mark.parametrize("shuffled", [False, True], ids=["signal", "labels-shuffled"])
def test_the_logistic_probe_is_scikit_learns_grid_search_on_the_same_folds(shuffled: bool):
    obs, labels, policy = episodes(shuffled)
    result = probe(policy, obs, "heading", 1, kind="logistic", controls=False, standardize=True)
    split = fold_split(obs, labels, 5, 0, stratify=True)
    x = rli.capture(policy, obs, [1])[1].astype(np.float64)
    grid = [1.0 / a for a in (0.01, 0.1, 1.0, 10.0, 100.0)]
    scores = []
    for f in range(5):
        train, test = split.ids != f, split.ids == f
        reference = make_pipeline(StandardScaler(), GridSearchCV(
            converged(), {"C": grid},
            cv=_grouped_inner(split.groups[train], labels[train])))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference.fit(x[train], labels[train])
        scores.append(float(np.mean(reference.predict(x[test]) == labels[test])))
    np.testing.assert_allclose(result.fold_scores, scores, atol=1e-12)
    final = make_pipeline(StandardScaler(), GridSearchCV(converged(), {"C": grid}, cv=_grouped_inner(split.groups, labels)))
    final.fit(x, labels)
    assert result.alpha == pytest.approx(1.0 / final[-1].best_params_["C"])
    reference_coef = final[-1].best_estimator_.coef_.T / final[0].scale_[:, None]
    np.testing.assert_allclose(result.coef, reference_coef, rtol=1e-3, atol=1e-4 * np.abs(reference_coef).max())


def converged() -> LogisticRegression:
    """The reference: scikit-learn's logistic regression solved to convergence, cold-started, by another solver
    (Newton-CG: Hessian-free) than the probe's Newton-Cholesky steps."""
    return LogisticRegression(solver="newton-cg", tol=1e-10, max_iter=1000)


def _grouped_inner(groups: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    codes = np.unique(groups, return_inverse=True)[1]
    ids = group_folds(codes, 3, 0, labels)  # as rli.probes builds the inner grouped splits
    return [(np.flatnonzero(ids != g), np.flatnonzero(ids == g)) for g in range(3)]


def test_logistic_path_chooses_like_grid_search_and_breaks_ties_to_the_first_penalty():
    """Row-level splits; the weakest penalties tie on accuracy here (separable classes): GridSearchCV takes the first
    listed, and so must the path, whatever order it fits them in."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 3))
    y = (x[:, 0] > 0).astype(int)
    cs = (100.0, 10.0, 1.0, 0.01)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    path = LogisticPath(cs, cv).fit(x, y)
    reference = GridSearchCV(LogisticRegression(max_iter=100_000, tol=1e-10), {"C": list(cs)}, cv=cv).fit(x, y)
    assert path.best_estimator_.C == reference.best_params_["C"] == 100.0
    assert reference.cv_results_["mean_test_score"][0] == reference.cv_results_["mean_test_score"][1]  # a tie
    np.testing.assert_allclose(path.best_estimator_.predict_proba(x), reference.predict_proba(x), atol=1e-4)


# ------------------------------------------------------------------------------- capture's check
def test_capture_finds_overflowing_activations_and_accepts_finite_ones_whose_sum_overflows():
    """The finite check sums each chunk first (one pass); a NaN/inf must still be found and named, and finite
    activations whose float32 sum overflows must not be mistaken for one."""
    layer = nn.Linear(1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1e30], [1.0]]))
        layer.bias.zero_()
    policy = rli.load_policy(nn.Sequential(layer))
    big = np.full((50, 1), 3e8, dtype=np.float32)  # 3e38 per row: finite, the sum of 50 rows is not
    assert np.isfinite(rli.capture(policy, big, [0])[0]).all()
    obs = np.ones((50, 1), dtype=np.float32)
    obs[17] = 1e9  # 1e39: inf in float32
    with pytest.raises(rli.RliError, match=r"^layer '0' produced 1 NaN/inf activations \(first for observation 17"):
        rli.capture(policy, obs, [0])
