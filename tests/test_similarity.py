"""rli.cka: symmetry, invariances, bounds, the estimators against direct formulas, input validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import rli

matrices = st.tuples(st.integers(8, 40), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**16)).map(
    lambda t: (np.random.default_rng(t[3]).normal(size=(t[0], t[1])), np.random.default_rng(t[3] + 1).normal(
        size=(t[0], t[2]))))


@settings(max_examples=25, deadline=None)
@given(matrices)
def test_symmetric_and_bounded(pair):
    a, b = pair
    value = rli.cka(a, b, n_boot=100, n_permutations=19).value
    assert -1.0 - 1e-12 <= value <= 1.0 + 1e-12
    assert value == pytest.approx(rli.cka(b, a, n_boot=100, n_permutations=19).value, abs=1e-12)
    assert rli.cka(a, a, n_boot=100, n_permutations=19).value == pytest.approx(1.0)
    biased = rli.cka(a, b, debiased=False, n_boot=100, n_permutations=19).value
    assert 0.0 <= biased <= 1.0 + 1e-12


@settings(max_examples=25, deadline=None)
@given(matrices, st.floats(0.01, 100.0), st.integers(0, 2**16))
def test_invariant_to_rotation_scaling_and_offsets(pair, scale, seed):
    a, b = pair
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.normal(size=(b.shape[1], b.shape[1])))[0]
    transformed = scale * b @ rotation + rng.normal(size=b.shape[1])
    for debiased in (True, False):
        assert (rli.cka(a, transformed, debiased=debiased, n_boot=100, n_permutations=19).value
                == pytest.approx(rli.cka(a, b, debiased=debiased, n_boot=100, n_permutations=19).value, abs=1e-9))


def test_not_invariant_to_arbitrary_linear_maps():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 2))
    stretched = a * np.array([1.0, 20.0])
    assert float(rli.cka(a, stretched)) < 0.99


@given(arrays(np.float64, (10, 3), elements=st.floats(-1e3, 1e3)))
def test_constant_or_bad_input_is_rejected(a):
    constant = np.ones((10, 2))
    with pytest.raises(rli.RliError, match="constant"):
        rli.cka(constant, a if np.any(a - a.mean(0)) else np.arange(30.0).reshape(10, 3))


@pytest.mark.parametrize(("a", "b", "message"), [
    (np.zeros((5, 2, 2)), np.ones((5, 2)), "activation matrix"),
    (np.array([[1.0, np.nan], [2.0, 1.0]]), np.ones((2, 2)), "NaN/inf"),
    (np.arange(10.0).reshape(5, 2), np.arange(12.0).reshape(6, 2), "same observations"),
])
def test_shapes_and_values(a, b, message):
    with pytest.raises(rli.RliError, match=message):
        rli.cka(a, b)


def _ucentred(gram: np.ndarray) -> np.ndarray:
    """Székely & Rizzo's U-centring (written here from the formula, independently of rli)."""
    n = gram.shape[0]
    k = gram.copy()
    np.fill_diagonal(k, 0.0)
    rows = k.sum(axis=0) / (n - 2)
    u = k - rows[:, None] - rows[None, :] + k.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(u, 0.0)
    return u


def _debiased_reference(a: np.ndarray, b: np.ndarray) -> float:
    k, l_ = _ucentred(a @ a.T), _ucentred(b @ b.T)
    return float(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)))


def _biased_reference(a: np.ndarray, b: np.ndarray) -> float:
    n = a.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l_ = h @ a @ a.T @ h, h @ b @ b.T @ h
    return float(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)))


@pytest.mark.parametrize(("n", "d1", "d2"), [(12, 3, 5), (80, 40, 7), (300, 3, 2)])
def test_estimators_equal_direct_formulas(n, d1, d2):
    """Debiased = U-centred Gram inner product (Gram and feature-space paths); biased = HKH/HLH formula."""
    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, d1)) + 3.0
    b = a[:, :1] @ rng.normal(size=(1, d2)) + rng.normal(size=(n, d2))
    result = rli.cka(a, b, n_boot=100, n_permutations=19)
    assert result.debiased and result.value == pytest.approx(_debiased_reference(a, b), abs=1e-10)
    assert rli.cka(a, b, debiased=False, n_boot=100, n_permutations=19).value == pytest.approx(
        _biased_reference(a, b), abs=1e-10)


def test_debiased_is_near_zero_where_the_biased_one_is_not():
    """The audit's case: independent random n = 100, d = 256 gives biased ≈ 0.72, debiased ≈ 0."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 256)), rng.normal(size=(100, 256))
    assert rli.cka(a, b, debiased=False, n_boot=100, n_permutations=19).value > 0.7
    debiased = rli.cka(a, b, n_boot=100, n_permutations=39)
    assert abs(debiased.value) < 0.06 and debiased.p_value > 0.01


def test_result_is_float_compatible_and_plain_data():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 4))
    result = rli.cka(a, a @ np.diag([1.0, 2.0, 1.0, 1.0]), groups=np.arange(50) // 10, n_boot=100, n_permutations=19)
    assert float(result) == result.value and result.resampled == "groups" and result.n_groups == 5
    assert result.to_dict()["ci"] == list(result.ci) and "bootstrap over 5 groups" in str(result)
    assert result == rli.cka(a, a @ np.diag([1.0, 2.0, 1.0, 1.0]), groups=np.arange(50) // 10, n_boot=100,
                             n_permutations=19)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"groups": np.arange(20) // 5}, "at least 5"),
    ({"groups": np.arange(19)}, "one label per row"),
    ({"n_boot": 10}, "n_boot"),
    ({"n_permutations": 5}, "n_permutations"),
    ({"confidence": 1.5}, "confidence"),
    ({"debiased": "yes"}, "debiased"),
])
def test_bad_options_are_rejected(kwargs, message):
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(rli.RliError, match=message):
        rli.cka(x, x, **kwargs)


def test_debiased_needs_four_rows():
    x = np.arange(6.0).reshape(3, 2) ** 2
    with pytest.raises(rli.RliError, match="at least 4 observations"):
        rli.cka(x, x)
