"""rli.subspace: PCA bases (numbers and signs of the reference), coordinates, orthonormalisation, complements."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rl_interrogate import pca_utils
from sklearn.decomposition import PCA

import rli
from rli import subspace, threads
from rli.subspace import complement, orthonormalize


def _projector(basis: np.ndarray) -> np.ndarray:
    """The orthogonal projector on span(basis) without orthonormalising: B (BᵀB)⁻¹ Bᵀ."""
    return basis @ np.linalg.solve(basis.T @ basis, basis.T)


@st.composite
def activations(draw, min_d=2, max_d=10):
    n = draw(st.integers(5, 60))
    d = draw(st.integers(min_d, max_d))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scales = rng.uniform(0.1, 5.0, size=d)
    acts = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * scales + rng.normal(size=d)
    return acts, draw(st.integers(1, min(n, d)))


@given(activations())
def test_pca_basis_is_orthonormal_ordered_and_signed(case):
    acts, k = case
    basis, ratio = rli.fit_pca(acts, k)
    assert basis.shape == (acts.shape[1], k) and ratio.shape == (k,)
    np.testing.assert_allclose(basis.T @ basis, np.eye(k), atol=1e-10)
    assert np.all(np.diff(ratio) <= 1e-12) and 0 < ratio.sum() <= 1 + 1e-12
    peaks = basis[np.abs(basis).argmax(axis=0), np.arange(k)]
    assert np.all(peaks > 0)


@given(activations(), st.integers(0, 2**16))
def test_pca_does_not_depend_on_row_order(case, seed):
    acts, k = case
    shuffled = acts[np.random.default_rng(seed).permutation(len(acts))]
    basis, ratio = rli.fit_pca(acts, k)
    again, ratio_again = rli.fit_pca(shuffled, k)
    np.testing.assert_allclose(ratio, ratio_again, rtol=1e-9, atol=1e-12)
    spectrum = np.r_[np.inf, rli.fit_pca(acts, min(acts.shape))[1], 0.0]
    separated = [min(spectrum[i] - spectrum[i + 1], spectrum[i + 1] - spectrum[i + 2]) > 1e-4 for i in range(k)]
    np.testing.assert_allclose(basis[:, separated], again[:, separated], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pca_matches_sklearn_and_the_reference(dtype):
    rng = np.random.default_rng(3)
    acts = (rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))).astype(dtype)
    basis, ratio = rli.fit_pca(acts, 5)
    reference, reference_ratio = pca_utils.fit_pca(acts, 5)
    sk = PCA(n_components=5).fit(acts.astype(np.float64))
    np.testing.assert_allclose(basis, sk.components_.T, atol=1e-9)
    np.testing.assert_allclose(ratio, sk.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(basis, reference, atol=1e-4)
    np.testing.assert_allclose(ratio, reference_ratio, rtol=1e-4)
    np.testing.assert_allclose(rli.project_subspace(acts, basis), pca_utils.project_subspace(acts, basis), rtol=1e-5)


@pytest.mark.parametrize("block_values", [7 * 12, 50 * 12, 2**18])
def test_pca_in_blocks_matches_sklearn_and_does_not_depend_on_threads(block_values, monkeypatch):
    rng = np.random.default_rng(4)
    acts = rng.normal(size=(1001, 12)) @ rng.normal(size=(12, 12)) + 3.0  # 1001 rows: halves and blocks uneven
    monkeypatch.setattr(subspace, "_BLOCK_VALUES", block_values)
    sk = PCA(n_components=4).fit(acts)
    runs = []
    for workers in (1, 2):
        monkeypatch.setattr(threads, "WORKERS", workers)
        runs.append(rli.fit_pca(acts, 4))
    np.testing.assert_allclose(runs[0][0], sk.components_.T, atol=1e-9)
    np.testing.assert_allclose(runs[0][1], sk.explained_variance_ratio_, rtol=1e-9)
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))


def test_pca_of_a_low_rank_cloud_finds_its_plane():
    rng = np.random.default_rng(0)
    plane = np.linalg.qr(rng.normal(size=(8, 2)))[0]
    acts = rng.normal(size=(300, 2)) * [3.0, 1.0] @ plane.T + 5.0
    basis, ratio = rli.fit_pca(acts, 2)
    np.testing.assert_allclose(basis @ basis.T, plane @ plane.T, atol=1e-10)
    np.testing.assert_allclose(ratio.sum(), 1.0)


def test_project_subspace_gives_uncentred_coordinates():
    acts = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(rli.project_subspace(acts, np.eye(3)[:, [2, 0]]), [[3.0, 1.0], [6.0, 4.0]])
    np.testing.assert_array_equal(rli.project_subspace(acts, [0.0, 1.0, 0.0]), [[2.0], [5.0]])


@pytest.mark.parametrize(("acts", "k", "message"), [
    (np.ones((10, 3)), 1, "constant"),
    (np.zeros(10), 1, r"matrix \(n, d\)"),
    (np.random.default_rng(0).normal(size=(10, 3)), 4, r"between 1 and min\(n, d\) = 3"),
    (np.random.default_rng(0).normal(size=(10, 3)), 0, "between 1"),
    (np.random.default_rng(0).normal(size=(10, 3)), 1.5, "whole number"),
    (np.array([[0.0, np.nan], [1.0, 2.0]]), 1, "NaN"),
])
def test_fit_pca_rejects_bad_input(acts, k, message):
    with pytest.raises(rli.RliError, match=message):
        rli.fit_pca(acts, k)


def test_project_subspace_rejects_mismatched_shapes():
    with pytest.raises(rli.RliError, match=r"activations \(2, 3\) and direction \(4, 1\) do not fit"):
        rli.project_subspace(np.zeros((2, 3)), np.ones(4))


@given(st.integers(1, 8), st.integers(0, 2**16), st.data())
def test_orthonormalize_spans_the_given_directions(d, seed, data):
    k = data.draw(st.integers(1, d))
    given_basis = np.random.default_rng(seed).normal(size=(d, k))
    basis = orthonormalize(given_basis)
    np.testing.assert_allclose(basis.T @ basis, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(basis @ basis.T, _projector(given_basis), atol=1e-8)
    np.testing.assert_allclose(basis[:, 0], given_basis[:, 0] / np.linalg.norm(given_basis[:, 0]), atol=1e-12)
    rest = complement(given_basis)
    assert rest.shape == (d, d - k)
    np.testing.assert_allclose(rest.T @ rest, np.eye(d - k), atol=1e-10)
    np.testing.assert_allclose(basis @ basis.T + rest @ rest.T, np.eye(d), atol=1e-10)


def test_a_single_direction_is_only_normalised():
    np.testing.assert_array_equal(orthonormalize(np.array([0.0, -2.0, 0.0])).ravel(), [0.0, -1.0, 0.0])


@pytest.mark.parametrize(("basis", "width", "message"), [
    (np.zeros(4), None, "the direction is the zero vector"),
    (np.c_[np.ones(4), np.zeros(4)], None, "column 1 of the basis is the zero vector"),
    (np.array([1.0, np.nan, 0.0]), None, "1 NaN/inf"),
    (np.c_[np.ones(4), 2 * np.ones(4)], None, r"linearly dependent \(rank 1\)"),
    (np.ones((2, 3)), None, "3 directions cannot be independent in a 2-dimensional space"),
    (np.ones(3), 4, r"shape \(3,\) but the layer's activations have 4 dimensions"),
    (np.eye(4)[:2], 4, r"looks transposed: pass its transpose \(4, 2\)"),
    (np.ones((2, 2, 2)), None, "a direction is a vector"),
    ("up", None, "numeric array"),
])
def test_orthonormalize_rejects_what_spans_nothing_or_does_not_fit(basis, width, message):
    with pytest.raises(rli.RliError, match=message) as info:
        orthonormalize(basis, width=width)
    assert "\n" not in str(info.value)
