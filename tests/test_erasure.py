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
