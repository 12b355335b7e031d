"""rli.erasure: LEACE against the concept-erasure package, exact in-sample erasure, concept encoding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import rli
from rli.erasure import concept_matrix, fit_leace

with warnings.catch_warnings():  # concept-erasure decorates helpers with the deprecated torch.jit.script
    warnings.simplefilter("ignore", DeprecationWarning)
    from concept_erasure import LeaceEraser, LeaceFitter


def _reference(x: np.ndarray, z: np.ndarray) -> LeaceEraser:
    """concept-erasure's LEACE on standardised concept columns, without shrinkage or the trace constraint."""
    standard = (z - z.mean(axis=0)) / z.std(axis=0)
    return LeaceFitter.fit(torch.tensor(x), torch.tensor(standard), shrinkage=False, constrain_cov_trace=False,
                           svd_tol=1e-6).eraser


@pytest.mark.parametrize("kind", ["scalar", "columns", "classes"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leace_matches_the_concept_erasure_package(kind, dtype):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(600, 10)) @ rng.normal(size=(10, 10)) + 3.0).astype(dtype)
    raw = {"scalar": np.tanh(x[:, 0]) + rng.normal(size=600),
           "columns": x[:, :3] @ rng.normal(size=(3, 2)) + rng.normal(size=(600, 2)),
           "classes": (x[:, 1] > 0).astype(int) + (x[:, 2] > 1)}[kind]
    z, _ = concept_matrix(raw, None, 600)
    ours = fit_leace(x, z)
    theirs = _reference(x.astype(np.float64), z)
    np.testing.assert_allclose(np.eye(10) - ours.proj_left @ ours.proj_right, theirs.P.numpy(), atol=1e-8)
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x, dtype=torch.float64)).numpy(), atol=1e-8)
    assert ours.rank == {"scalar": 1, "columns": 2, "classes": 2}[kind]


def test_erasure_does_not_depend_on_the_units_of_the_concept():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    z = x[:, 0] + 0.5 * rng.normal(size=500)
    small, large = fit_leace(x, 1e-3 * z), fit_leace(x, 1e3 * z)
    np.testing.assert_allclose(small(x), large(x), atol=1e-9)
    package = LeaceEraser.fit(torch.tensor(x), torch.tensor(1e-3 * z))  # its absolute svd_tol=0.01 keeps the concept
    assert abs(np.corrcoef(package(torch.tensor(x)).numpy()[:, 0], z)[0, 1]) > 0.5
    assert np.abs(np.corrcoef(small(x).T, z)[-1, :-1]).max() < 1e-8


@st.composite
def data_and_concept(draw):
    n = draw(st.integers(4, 80))
    d = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rank = draw(st.integers(1, d))
    x = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) * 10.0 ** draw(st.integers(-3, 3))
    k = draw(st.integers(1, 3))
    z = np.tanh(x @ rng.normal(size=(d, k))) + draw(st.floats(0, 2)) * rng.normal(size=(n, k))
    return x, z


@given(data_and_concept())
def test_erased_data_has_no_cross_covariance_with_the_concept(case):
    x, z = case
    assume(np.all(z.std(axis=0) > 0))
    eraser = fit_leace(x, z)
    erased = eraser(x)
    cross = (erased - erased.mean(axis=0)).T @ (z - z.mean(axis=0)) / len(x)
    scale = np.abs(x - x.mean(axis=0)).max() * np.abs(z - z.mean(axis=0)).max()
    assert np.abs(cross).max() <= 1e-9 * max(scale, 1e-300)
    np.testing.assert_allclose(eraser(eraser.mean[None]), eraser.mean[None], atol=1e-9 * (1 + np.abs(x).max()))
    assert eraser.rank <= min(x.shape[1], z.shape[1])


def test_concepts_from_labels_arrays_strings_booleans_and_integers():
    obs = rli.ObsSet(np.zeros((4, 2)), labels={"speed": [1.0, 2.0, 3.0, 5.0], "side": ["l", "r", "l", "l"]})
    speed, name = concept_matrix("speed", obs, 4)
    assert name == "'speed'" and speed.shape == (4, 1)
    side, _ = concept_matrix("side", obs, 4)
    np.testing.assert_array_equal(side, [[1, 0], [0, 1], [1, 0], [1, 0]])
    flags, name = concept_matrix(np.array([True, False, True, True]), obs, 4)
    assert flags.shape == (4, 2) and name == "a concept of 2 classes"
    counts, _ = concept_matrix(np.array([0, 1, 2, 5]), obs, 4)
    assert counts.shape == (4, 4)
    numbers, name = concept_matrix(np.array([0, 1, 2, 5]), obs, 4, categorical=False)
    assert numbers.ravel().tolist() == [0.0, 1.0, 2.0, 5.0] and name == "a concept of 1 column"
    assert concept_matrix(np.ones((4, 3)) * [[1], [2], [3], [4]], obs, 4)[1] == "a concept of 3 columns"


@pytest.mark.parametrize(("concept", "obs", "kwargs", "message"), [
    ("speed", np.zeros((4, 2)), {}, "is a label name, but the observations are a plain array"),
    ("nope", rli.ObsSet(np.zeros((4, 2)), labels={"speed": [1, 2, 3, 4]}), {}, "unknown label 'nope'"),
    (np.ones(3), None, {}, r"shape \(3,\) for 4 observations"),
    (np.ones(4), None, {}, "constant over these observations"),
    (np.array([2, 2, 2, 2]), None, {}, "a single class"),
    (np.array([0.0, np.nan, 1.0, 2.0]), None, {}, "1 NaN/inf"),
    (np.ones((4, 2), dtype=int), None, {}, "one column of classes"),
    (np.array([1, "a", None, 2.0], dtype=object), None, {}, "mixed or object"),
])
def test_bad_concepts_are_rejected(concept, obs, kwargs, message):
    with pytest.raises(rli.RliError, match=message) as info:
        concept_matrix(concept, obs, 4, **kwargs)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def formation_grid_layer5():
    """The shipped formation policy's layer 5 (float32, 128 units) on the reference probe grid: a smooth 2-D
    manifold whose covariance spans 11 decades, where float32's cut-off dropped 72 of 128 directions."""
    from rli.envs import probe_grid

    policy = rli.load_policy("examples/checkpoints/formation_ppo_seed42.zip")
    grid = probe_grid(nominal="reference")
    acts = rli.capture(policy, grid, layers=[5])[5]
    z, _ = concept_matrix("upwash", grid, len(acts))
    reference = LeaceFitter.fit(torch.tensor(acts.astype(np.float64)), torch.tensor(z), shrinkage=False,
                                constrain_cov_trace=False, svd_tol=1e-12).eraser
    return policy, grid, acts, z, reference(torch.tensor(acts.astype(np.float64))).numpy()


def test_float32_activations_get_the_exact_float64_eraser(formation_grid_layer5):
    _, _, acts, z, exact = formation_grid_layer5
    assert acts.dtype == np.float32
    eraser = fit_leace(acts, z)
    assert eraser.whitened == 128  # was 56: float32's d·eps·max cut-off
    erased = eraser(acts)
    assert np.abs(erased - exact).max() <= 1e-6 * np.abs(exact).max()  # was 0.17 relative
    zs = (z - z.mean(axis=0)) / z.std(axis=0)
    assert np.abs((erased - erased.mean(axis=0)).T @ zs / len(z)).max() < 1e-12  # was 6e-4


def test_the_erase_intervention_applies_the_exact_eraser_to_a_float32_layer(formation_grid_layer5):
    policy, grid, _, z, exact = formation_grid_layer5
    with rli.erase(policy, 5, grid, "upwash") as leace:
        out = rli.capture(policy, grid, layers=[5])[5]
    assert leace.to_dict()["whitened_directions"] == 128 and leace.to_dict()["guarantee"].startswith("in-sample, linear")
    assert np.abs(out - exact).max() <= 1e-6 * np.abs(exact).max()  # float32 edit: 4e-5
    zs = (z - z.mean(axis=0)) / z.std(axis=0)
    assert np.abs((out - out.mean(axis=0)).T @ zs / len(z)).max() < 1e-7  # float32 rounding of the output only


def test_shrinkage_reproduces_leace_fitters_default_covariance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 30)) @ rng.normal(size=(30, 30))  # few rows for the width: shrinkage matters
    z = x[:, :2] @ rng.normal(size=2) + rng.normal(size=80)
    ours = fit_leace(x, z, shrinkage=True)
    theirs = LeaceFitter.fit(torch.tensor(x), torch.tensor(z[:, None]), shrinkage=True, constrain_cov_trace=False,
                             svd_tol=1e-12).eraser
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).numpy(), atol=1e-9 * np.abs(x).max())
    assert np.abs(ours(x) - fit_leace(x, z)(x)).max() > 1e-3  # a different eraser from the plain one
    erased = ours(x)
    assert np.abs((erased - erased.mean(axis=0)).T @ (z - z.mean()) / 80).max() < 1e-9 * np.abs(x).max()
    with pytest.raises(rli.RliError, match="shrinkage must be True or False"):
        fit_leace(x, z, shrinkage="yes")


def test_grouped_ridge_equals_scikit_learn_and_never_splits_a_group():
    from sklearn.linear_model import Ridge

    from rli.erasure import grouped_r2

    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 6)) * [1, 2, 3, 4, 5, 0.1]
    y = x @ rng.normal(size=6) + rng.normal(size=200)
    level = np.mean((x[:150] - x[:150].mean(axis=0)) ** 2)  # penalties relative to the mean unit variance
    expected = Ridge(alpha=0.5 * 150 * level).fit(x[:150], y[:150]).predict(x[150:])
    from rli import erasure

    got = erasure._ridge_predictions(x[:150], y[:150, None], x[150:], np.array([0.5]))[0][:, 0]
    np.testing.assert_allclose(got, expected, atol=1e-10)
    # a per-group constant target unrelated to x: a row-level split would leak it through the groups' x-clusters
    groups = np.repeat(np.arange(10), 20)
    clustered = rng.normal(size=(10, 6))[groups] + 0.05 * rng.normal(size=(200, 6))
    assert grouped_r2(clustered, rng.normal(size=10)[groups], groups).r2 < 0.2


def test_erasure_report_says_how_it_split_and_rejects_too_few_groups():
    from rli.erasure import erasure_report

    policy = rli.load_policy(torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)))
    x = np.random.default_rng(5).normal(size=(240, 3))
    obs = rli.ObsSet(x, labels={"first": x[:, 0], "episode": np.repeat(np.arange(8), 30),
                                "block": np.repeat(np.arange(12), 20)})
    report = erasure_report(policy, 1, obs, "first", folds=3, nonlinear=False, groups="block")
    assert report.split == "by 'block'" and (report.groups_fit, report.groups_held_out) == (6, 6)
    assert report.before.recovered and report.max_correlation < 1e-9 and report.nonlinear is None
    assert "LEACE promises nothing" not in str(report) and "in-sample (the guarantee)" in str(report)
    assert report.to_dict()["guarantee"] == "in-sample, linear"
    with pytest.raises(rli.RliError, match=r"8 groups \(by 'episode'\).*at least 5 groups each side") as info:
        erasure_report(policy, 1, obs, "first")
    assert "\n" not in str(info.value)
    with pytest.raises(rli.RliError, match="groups='nope' is not a label"):
        erasure_report(policy, 1, obs, "first", groups="nope")
    with pytest.raises(rli.RliError, match="held_out must be a fraction"):
        erasure_report(policy, 1, obs, "first", held_out=2.0, folds=3)


def test_recovery_scores_do_not_read_the_rounding_noise_erasure_leaves():
    # after LEACE the erased unit holds rounding noise of ~1e-16 that correlates with the concept (corr 0.84 here):
    # a per-unit standardised probe scaled it up and "recovered" the concept (R² 0.99); the scores must not
    from rli.erasure import fit_leace, grouped_r2

    rng = np.random.default_rng(0)
    x, groups = rng.normal(size=(400, 6)), np.repeat(np.arange(10), 40)
    erased = fit_leace(x, x[:, 0])(x)
    assert grouped_r2(x, x[:, 0], groups).r2 > 0.99
    assert grouped_r2(erased, x[:, 0], groups).ci[0] < 0 < grouped_r2(erased, x[:, 0], groups).ci[1]
    assert grouped_r2(erased, x[:, 0], groups, kind="mlp").r2 < 0.2
