"""rli.cka: symmetry, invariances, bounds and input validation (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import rli

matrices = st.tuples(st.integers(8, 40), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**16)).map(
    lambda t: (np.random.default_rng(t[3]).normal(size=(t[0], t[1])), np.random.default_rng(t[3] + 1).normal(
        size=(t[0], t[2]))))


@given(matrices)
def test_symmetric_and_bounded(pair):
    a, b = pair
    value = rli.cka(a, b)
    assert 0.0 <= value <= 1.0 + 1e-12
    assert value == pytest.approx(rli.cka(b, a), abs=1e-12)
    assert rli.cka(a, a) == pytest.approx(1.0)


@given(matrices, st.floats(0.01, 100.0), st.integers(0, 2**16))
def test_invariant_to_rotation_scaling_and_offsets(pair, scale, seed):
    a, b = pair
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.normal(size=(b.shape[1], b.shape[1])))[0]
    transformed = scale * b @ rotation + rng.normal(size=b.shape[1])
    assert rli.cka(a, transformed) == pytest.approx(rli.cka(a, b), abs=1e-9)


def test_not_invariant_to_arbitrary_linear_maps():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 2))
    stretched = a * np.array([1.0, 20.0])
    assert rli.cka(a, stretched) < 0.99


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
