"""Hypothesis strategies for property tests of your own policies and claims.

Requires ``hypothesis`` (``pip install hypothesis``; it is in rli's ``[dev]`` extra).

Example:
    >>> from hypothesis import given, settings
    >>> import numpy as np, rli
    >>> from rli import strategies as rst
    >>> @settings(max_examples=5, deadline=None)
    ... @given(rst.policies(), rst.seeds())
    ... def test_ablating_with_alpha_one_changes_nothing(policy, seed):
    ...     obs = np.random.default_rng(seed).normal(size=(8, *policy.obs_shape))
    ...     before = policy.act(obs)
    ...     direction = np.random.default_rng(seed).normal(size=policy.layer(0).width)
    ...     with rli.ablate(policy, 0, direction, alpha=1.0):
    ...         np.testing.assert_allclose(policy.act(obs), before, atol=1e-6)
    >>> test_ablating_with_alpha_one_changes_nothing()
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

_ACTIVATIONS = ("tanh", "relu", "elu")


def seeds() -> st.SearchStrategy[int]:
    """Seeds for numpy/torch generators."""
    return st.integers(0, 2**31 - 1)


def observations(dim: int, *, min_rows: int = 1, max_rows: int = 64, scale: float = 10.0) -> st.SearchStrategy[np.ndarray]:
    """Finite float32 observation batches of shape (n, dim).

    Example:
        >>> from hypothesis import given
        >>> @given(observations(28))
        ... def check(obs):
        ...     assert obs.shape[1] == 28 and np.isfinite(obs).all()
        >>> check()
    """
    elements = st.floats(-scale, scale, allow_nan=False, allow_infinity=False, width=32)
    return st.integers(min_rows, max_rows).flatmap(lambda n: hnp.arrays(np.float32, (n, dim), elements=elements))


def directions(dim: int) -> st.SearchStrategy[np.ndarray]:
    """Non-zero direction vectors of length ``dim`` (not normalised: rli normalises)."""
    return seeds().map(lambda seed: _nonzero(np.random.default_rng(seed).normal(size=dim)))


def subspaces(dim: int, *, max_rank: int | None = None) -> st.SearchStrategy[np.ndarray]:
    """Bases (dim × k) of full column rank, 1 ≤ k ≤ ``max_rank`` (default ``dim``)."""
    top = dim if max_rank is None else min(dim, max_rank)
    return st.tuples(st.integers(1, top), seeds()).map(
        lambda kv: np.linalg.qr(np.random.default_rng(kv[1]).normal(size=(dim, kv[0])))[0] * 3.0)


def policies(*, obs_dim: st.SearchStrategy[int] | None = None, max_depth: int = 3,
             max_width: int = 16) -> st.SearchStrategy[Any]:
    """Small random MLP policies (``rli.Policy`` over an ``nn.Sequential`` of Linear + activation pairs).

    Layer 0 is always the first Linear, so ``policy.layer(0)`` exists.
    """
    return st.builds(_mlp_policy, obs_dim or st.integers(1, 8),
                     st.lists(st.integers(1, max_width), min_size=1, max_size=max_depth),
                     st.sampled_from(_ACTIVATIONS), st.integers(1, 4), seeds())


def _nonzero(vector: np.ndarray) -> np.ndarray:
    return vector if np.linalg.norm(vector) > 1e-6 else np.ones_like(vector)


def _mlp_policy(obs_dim: int, hidden: list[int], activation: str, actions: int, seed: int) -> Any:
    import torch

    import rli

    torch.manual_seed(seed)
    return rli.load_policy(rli.build_arch({"mlp": [obs_dim, *hidden, actions], "activation": activation}))
