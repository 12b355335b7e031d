"""rli.strategies generate what they promise."""

from __future__ import annotations

import numpy as np
from hypothesis import given

import rli
from rli import strategies as rst


@given(rst.policies(), rst.seeds())
def test_policies_are_small_valid_mlps(policy, seed):
    assert isinstance(policy, rli.Policy) and policy.layer(0).type == "Linear"
    obs = np.random.default_rng(seed).normal(size=(3, *policy.obs_shape))
    assert policy.act(obs).shape[0] == 3


@given(rst.observations(5, max_rows=10))
def test_observations(obs):
    assert obs.dtype == np.float32 and obs.shape[1] == 5 and 1 <= obs.shape[0] <= 10 and np.isfinite(obs).all()


@given(rst.directions(7), rst.subspaces(7, max_rank=3))
def test_directions_and_subspaces(direction, basis):
    assert direction.shape == (7,) and np.linalg.norm(direction) > 0
    assert basis.shape[0] == 7 and 1 <= basis.shape[1] <= 3
    assert np.linalg.matrix_rank(basis) == basis.shape[1]
